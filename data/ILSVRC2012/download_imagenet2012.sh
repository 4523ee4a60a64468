#!/usr/bin/env bash
# Download and unpack ILSVRC2012 (ImageNet-1k) into this folder and write the classic list files.
# Needs an image-net.org account: pass the download base URL your account gives you, e.g.
#   bash download_imagenet2012.sh https://<your-access-url>/ILSVRC2012
# Afterwards: train_list.txt / val_list.txt here, ready for --data_dir ./data/ILSVRC2012/.
set -euo pipefail
base="${1:?usage: download_imagenet2012.sh BASE_URL (from your image-net.org account)}"
cd "$(dirname "$0")"
for file in ILSVRC2012_img_train.tar ILSVRC2012_img_val.tar; do
  [ -f "$file" ] || wget -c "$base/$file"
done
mkdir -p train val
tar -xf ILSVRC2012_img_train.tar -C train
for class_tar in train/*.tar; do
  dir="${class_tar%.tar}"; mkdir -p "$dir"; tar -xf "$class_tar" -C "$dir"; rm -f "$class_tar"
done
tar -xf ILSVRC2012_img_val.tar -C val
# Label lists: classes are the sorted synset folders (the standard 0-999 order).
[ -f train_list.txt ] || { echo "writing train_list.txt"; python3 ../make_lists.py . --val_fraction 0 >/dev/null; }
if [ ! -f val_list.txt ] || [ ! -s val_list.txt ]; then
  echo "val_list.txt: the validation labels are not in the tar; put the official val_list.txt"
  echo "(ILSVRC2012_val_XXXXXXXX.JPEG label) here, or sort val/ into synset folders and rerun make_lists.py"
fi
