//go:build !linux

package transport

// nothingToRead reports false where the peek is not written: the reader then waits in the
// library, as it would without waitInput.
func nothingToRead(uintptr) bool { return false }
