package transport

import (
	"syscall"
	"unsafe"
)

// nothingToRead reports whether the socket fd has no bytes waiting and no error or end of
// stream to report: a one-byte peek that would block. The raw system call keeps the peek
// free of allocations (syscall.Recvfrom allocates for the peer's address).
func nothingToRead(fd uintptr) bool {
	var b [1]byte
	_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return errno == syscall.EAGAIN
}
