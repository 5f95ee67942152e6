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

// TestQuoted: what Quoted answers of each kind of string, past the eight-byte loop and
// within it, and where it leaves Pos; and Plain, its fast path, on the same strings.
func TestQuoted(t *testing.T) {
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
			body, escaped, ascii, err := s.Quoted()
			if tc.err {
				if !errors.Is(err, ErrUnexpected) {
					t.Fatalf("Quoted(%q) = %v, want an error", tc.line, err)
				}
				p := Scanner{Line: []byte(tc.line)}
				if _, ok := p.Plain(); ok || p.Pos != 0 {
					t.Errorf("Plain(%q) took it (Pos %d), want a refusal that leaves Pos at 0", tc.line, p.Pos)
				}
				return
			}
			if err != nil {
				t.Fatalf("Quoted(%q): %v", tc.line, err)
			}
			if string(body) != tc.body || escaped != tc.escaped || ascii != tc.ascii {
				t.Errorf("Quoted(%q) = %q, escaped %v, ascii %v; want %q, %v, %v", tc.line, body, escaped, ascii, tc.body, tc.escaped, tc.ascii)
			}
			if want := len(tc.body) + 2; s.Pos != want {
				t.Errorf("Quoted(%q) left Pos at %d, want %d", tc.line, s.Pos, want)
			}
			p := Scanner{Line: []byte(tc.line)}
			plain, ok := p.Plain()
			if ok != !tc.escaped || ok && (string(plain) != tc.body || p.Pos != len(tc.body)+2) || !ok && p.Pos != 0 {
				t.Errorf("Plain(%q) = %q, %v, Pos %d; want %q, %v, Pos %d", tc.line, plain, ok, p.Pos, tc.body, !tc.escaped, len(tc.body)+2)
			}
		})
	}
}

// TestUint: unsigned integers up to 64 bits, and nothing else; Pos after the number read.
func TestUint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		line string
		want uint64
		pos  int
		err  bool
	}{
		{line: "0", pos: 1}, {line: "42", want: 42, pos: 2}, {line: "18446744073709551615", want: 1<<64 - 1, pos: 20},
		{line: "18446744073709551616", err: true}, {line: "-1", err: true}, {line: "1.5", err: true},
		{line: "1e2", err: true}, {line: "x", err: true},
		{line: "01", want: 0, pos: 1}, // a number ends at a leading zero: the caller sees the 1 next
		{line: "7,", want: 7, pos: 1},
	} {
		t.Run(tc.line, func(t *testing.T) {
			t.Parallel()
			s := Scanner{Line: []byte(tc.line)}
			got, err := s.Uint()
			if tc.err {
				if !errors.Is(err, ErrUnexpected) {
					t.Fatalf("Uint(%q) = %d, %v; want an error", tc.line, got, err)
				}
				return
			}
			if err != nil || got != tc.want || s.Pos != tc.pos {
				t.Errorf("Uint(%q) = %d, %v, Pos %d; want %d, Pos %d", tc.line, got, err, s.Pos, tc.want, tc.pos)
			}
		})
	}
}

// FuzzSkip holds the scanner to encoding/json: a line that is one JSON value and white space
// is exactly a line json.Valid accepts; a string's body is its value whenever it has no
// escape and is valid UTF-8 (ascii then says whether it is all ASCII); and Plain takes
// exactly the strings without escapes, as Quoted reads them.
func FuzzSkip(f *testing.F) {
	for _, s := range []string{
		// Protocol lines, as clients and the server write them (PROTOCOL.md).
		`{"type":"join","room":"general","user":"alice","since":{"epoch":"k3J9","seq":41},"ref":"1"}`,
		`{"type":"message","room":"general","text":"hello \"world\"\n é","ref":"c-17"}`,
		`{"type":"typing","room":"general","on":true}`,
		`{"type":"welcome","proto":1,"node":"host-a-7f3c","limits":{"text":4000,"rooms":16,"rate":10,"burst":20}}`,
		`{"type":"joined","ref":"1","room":"general","user":"alice","epoch":"k3J9","seq":41,"recovered":false,"users":["alice","bob"],"history":[{"type":"message","room":"general","seq":40,"user":"bob","text":"hi","ts":1764430000000}]}`,
		`{"type":"error","ref":"c-18","code":"rate_limited","message":"at most 10 messages a second"}`,
		// Edges.
		`"é"`, "\"\xff\"", ` 0 `, `01`, `[1,]`, `{"a" 1}`, `-`, `1.`, `1e`, `"\ud800"`, `nul`, `[[[[]]]]`, `"abcdefgh\u00e9"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		s := Scanner{Line: line}
		s.Space()
		err := s.Skip()
		if err == nil {
			err = s.End()
		}
		if valid := json.Valid(line); valid != (err == nil) {
			t.Fatalf("Skip(%q): %v; json.Valid says %v", line, err, valid)
		}
		s = Scanner{Line: line}
		body, escaped, ascii, err := s.Quoted()
		p := Scanner{Line: line}
		plain, ok := p.Plain()
		if ok != (err == nil && !escaped) || ok && (string(plain) != string(body) || p.Pos != s.Pos) || !ok && p.Pos != 0 {
			t.Fatalf("Plain(%q) = %q, %v, Pos %d; Quoted read %q, escaped %v, error %v, Pos %d", line, plain, ok, p.Pos, body, escaped, err, s.Pos)
		}
		var want string
		if err != nil || s.End() != nil || json.Unmarshal(line, &want) != nil {
			return
		}
		if ascii != isASCII(body) {
			t.Fatalf("Quoted(%q): ascii %v for %q", line, ascii, body)
		}
		if !escaped && utf8.Valid(body) && string(body) != want {
			t.Fatalf("Quoted(%q) = %q, encoding/json reads %q", line, body, want)
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

// TestScannerAllocs: reading a line allocates nothing, strings with escapes and values
// skipped included (the package's promise, which both hot paths rely on). Not parallel:
// AllocsPerRun counts every goroutine's allocations.
func TestScannerAllocs(t *testing.T) {
	line := []byte(`{"type":"message","room":"r","seq":42,"text":"a \"quoted\" \u00e9 line","history":[{"a":[1,-2.5e3,true,null]}]}`)
	text := strings.Index(string(line), `"a \"`)
	allocs := testing.AllocsPerRun(100, func() {
		s := Scanner{Line: line}
		if err := s.Skip(); err != nil {
			t.Fatal(err)
		}
		s = Scanner{Line: line, Pos: text}
		if _, _, _, err := s.Quoted(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a line read costs %v allocations, want none", allocs)
	}
}
