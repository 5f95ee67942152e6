//go:build !unix

package transport

// canPeek says that there is no peekInput here: the reader waits in the library.
const canPeek = false

func peekInput(uintptr) input { return inputOther }
