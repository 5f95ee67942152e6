package wire

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestAppendRead(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 3000)
	cases := []struct {
		name    string
		r       io.Reader
		dst     []byte
		want    string
		wantErr error
	}{
		{"empty", strings.NewReader(""), nil, "", nil},
		{"fits the buffer", strings.NewReader("hello"), make([]byte, 0, 16), "hello", nil},
		{"grows past the buffer", iotest.OneByteReader(strings.NewReader(long)), make([]byte, 0, 8), long, nil},
		{"appends to what dst holds", strings.NewReader("b"), []byte("a"), "ab", nil},
		{"keeps what came before an error", io.MultiReader(strings.NewReader("part"), iotest.ErrReader(io.ErrUnexpectedEOF)), nil, "part", io.ErrUnexpectedEOF},
	}
	for _, tc := range cases {
		got, err := AppendRead(tc.dst, tc.r)
		if string(got) != tc.want || !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: %q, %v; want %q, %v", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
	buf := make([]byte, 0, 64)
	got, _ := AppendRead(buf, strings.NewReader("reused"))
	if &got[0] != &buf[:1][0] {
		t.Error("a message that fits was not read into dst's own array")
	}
}
