package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropCache asks the kernel to drop the file's pages from its cache, so
// the next read of them goes to the disk.
func dropCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}
