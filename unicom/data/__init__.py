"""Reading input images: shard lists, the webdataset reader with counted skips, the one image
opener, and the eval/train transforms."""
