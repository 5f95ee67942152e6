package jsonscan

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestHasSpecial holds the word-at-a-time test to the byte table: every byte value, at every
// position of a word of plain bytes, and next to bytes past ASCII (which must neither hide a
// special byte nor pass for one).
func TestHasSpecial(t *testing.T) {
	t.Parallel()
	for _, filler := range []byte{'a', 0x7f, 0x80, 0xff} {
		for pos := range 8 {
			for c := range 256 {
				var w [8]byte
				for i := range w {
					w[i] = filler
				}
				w[pos] = byte(c)
				want := stringSpecial[c] || stringSpecial[filler]
				if got := hasSpecial(binary.LittleEndian.Uint64(w[:])); got != want {
					t.Fatalf("hasSpecial(% x) = %v, want %v", w, got, want)
				}
			}
		}
	}
}

// TestString: what String answers of each kind of string, past the eight-byte loop and
// within it, and where it leaves Pos.
func TestString(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("abcdefgh", 3)
	for _, tc := range []struct {
		name, line, body string
		escaped, ascii   bool
		err              bool
	}{
		{name: "empty", line: `""`, body: "", ascii: true},
		{name: "short", line: `"hi"`, body: "hi", ascii: true},
		{name: "long", line: `"` + long + `"`, body: long, ascii: true},
		{name: "past ASCII, short", line: `"é"`, body: "é"},
		{name: "past ASCII in a word", line: `"` + long + `é` + long + `"`, body: long + "é" + long},
		{name: "escape", line: `"a\"b"`, body: `a\"b`, escaped: true, ascii: true},
		{name: "escape after a word", line: `"` + long + `\u00e9"`, body: long + `\u00e9`, escaped: true, ascii: true},
		{name: "a quote ends it", line: `"a"b"`, body: "a", ascii: true},
		{name: "unterminated", line: `"abc`, err: true},
		{name: "unterminated long", line: `"` + long, err: true},
		{name: "control character", line: "\"a\x01\"", err: true},
		{name: "control character in a word", line: "\"" + long + "\x1f" + long + "\"", err: true},
		{name: "bad escape", line: `"\x"`, err: true},
		{name: "short \\u", line: `"\u12"`, err: true},
		{name: "bad \\u", line: `"\u12g4"`, err: true},
		{name: "not a string", line: `abc`, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := Scanner{Line: []byte(tc.line)}
			body, escaped, ascii, err := s.String()
			if tc.err {
				if !errors.Is(err, ErrUnexpected) {
					t.Fatalf("String(%q) = %v, want an error", tc.line, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("String(%q): %v", tc.line, err)
			}
			if string(body) != tc.body || escaped != tc.escaped || ascii != tc.ascii {
				t.Errorf("String(%q) = %q, escaped %v, ascii %v; want %q, %v, %v", tc.line, body, escaped, ascii, tc.body, tc.escaped, tc.ascii)
			}
			if want := len(tc.body) + 2; s.Pos != want {
				t.Errorf("String(%q) left Pos at %d, want %d", tc.line, s.Pos, want)
			}
		})
	}
}

// TestUint: unsigned integers up to 64 bits, and nothing else.
func TestUint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		line string
		want uint64
		err  bool
	}{
		{line: "0"}, {line: "42", want: 42}, {line: "18446744073709551615", want: 1<<64 - 1},
		{line: "18446744073709551616", err: true}, {line: "-1", err: true}, {line: "1.5", err: true},
		{line: "1e2", err: true}, {line: "01", want: 0}, {line: "x", err: true},
	} {
		s := Scanner{Line: []byte(tc.line)}
		got, err := s.Uint()
		if tc.err != (err != nil) || got != tc.want {
			t.Errorf("Uint(%q) = %d, %v; want %d, error %v", tc.line, got, err, tc.want, tc.err)
		}
	}
}

// FuzzSkip holds Skip to encoding/json: a line that is one JSON value and white space is
// exactly a line json.Valid accepts, and a string's answers agree with json.Unmarshal.
func FuzzSkip(f *testing.F) {
	for _, s := range []string{`{}`, `[]`, `{"a":[1,-2.5e3,true,false,null,"x\u00e9\n"]}`, `"é"`, "\"\xff\"", ` 0 `, `01`, `[1,]`, `{"a" 1}`, `-`, `1.`, `1e`, `"\ud800"`, `nul`, `[[[[]]]]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		s := Scanner{Line: line}
		s.Space()
		err := s.Skip(0)
		if err == nil {
			err = s.End()
		}
		if valid := json.Valid(line); valid != (err == nil) {
			t.Fatalf("Skip(%q): %v; json.Valid says %v", line, err, valid)
		}
		s = Scanner{Line: line}
		body, escaped, ascii, err := s.String()
		var want string
		if err != nil || s.End() != nil || json.Unmarshal(line, &want) != nil {
			return
		}
		if ascii != isASCII(body) {
			t.Fatalf("String(%q): ascii %v for %q", line, ascii, body)
		}
		if !escaped && ascii && string(body) != want {
			t.Fatalf("String(%q) = %q, encoding/json reads %q", line, body, want)
		}
	})
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
