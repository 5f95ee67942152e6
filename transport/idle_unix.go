//go:build unix

package transport

import "syscall"

// canPeek says that peekInput looks at the socket here.
const canPeek = true

// peekInput looks at the bytes waiting on the socket fd without taking them, and takes them
// only when they start with a whole, masked, final pong, which the library would otherwise
// read deep in its frame reader. syscall.Recvfrom does not allocate for a TCP socket (it
// reports no peer address).
func peekInput(fd uintptr) input {
	var b [maxPong]byte
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
		return inputNone
	case err != nil || n < 2:
		return inputOther
	}
	size := wholePong(b[:n])
	if size == 0 {
		return inputOther
	}
	if got, err := syscall.Read(int(fd), b[:size]); err != nil || got != size {
		return inputOther // cannot happen with the bytes just peeked; the library reads on
	}
	return inputPong
}
