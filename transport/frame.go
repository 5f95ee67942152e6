package transport

// The session's writer writes data frames itself, straight to the connection, and leaves the
// rest of the WebSocket protocol to coder/websocket: the handshake, reading, control frames,
// the close handshake. A data frame is then one write call with no lock and no copy beyond
// building it, where going through the library costs two locks, a copy into its buffer and a
// flush. This is safe because the library itself only ever writes control frames (pongs,
// pings, closes), each in one write call, and a net.Conn serializes write calls: frames
// cannot interleave.

// maxFrameHeader is the longest header of a server frame: no mask, a 64-bit length.
const maxFrameHeader = 10

// putFrameHeader writes the header of a final, unmasked text frame of n payload bytes at the
// end of hdr (maxFrameHeader bytes) and returns where it starts (RFC 6455, section 5.2).
func putFrameHeader(hdr []byte, n int) int {
	const finText = 0x81
	switch {
	case n < 126:
		hdr[8], hdr[9] = finText, byte(n)
		return 8
	case n < 1<<16:
		hdr[6], hdr[7], hdr[8], hdr[9] = finText, 126, byte(n>>8), byte(n)
		return 6
	default:
		hdr[0], hdr[1] = finText, 127
		for i := range 8 {
			hdr[2+i] = byte(uint64(n) >> (56 - 8*i))
		}
		return 0
	}
}

// appendFrame appends a whole text frame with payload p to dst.
func appendFrame(dst, p []byte) []byte {
	var hdr [maxFrameHeader]byte
	start := putFrameHeader(hdr[:], len(p))
	dst = append(dst, hdr[start:]...)
	return append(dst, p...)
}
