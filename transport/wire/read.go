package wire

import "io"

// AppendRead appends all that r holds, to its end, to dst and returns the result. Server and
// clients read each WebSocket message with it into a pooled buffer, whose capacity it reuses.
func AppendRead(dst []byte, r io.Reader) ([]byte, error) {
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}
