package bench

import (
	"strings"
	"testing"
)

// TestCheckOpenFiles checks every process of a run against its open-files limit: this one,
// with the clients or with the embedded server's ends of their connections, and each child.
func TestCheckOpenFiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		users    int
		procs    int
		embedded bool
		limit    uint64
		want     string // "" for no error
	}{
		{"limit unknown", 1 << 20, 0, true, 0, ""},
		{"clients here", 1000, 0, false, 1100, ""},
		{"clients here, past the limit", 2000, 0, false, 1100, "use --procs to spread"},
		{"clients and server here", 1000, 0, true, 2100, ""},
		{"clients and server here, past the limit", 1000, 0, true, 1100, "use --procs (the embedded server"},
		{"children, each in its limit", 4000, 4, false, 1100, ""},
		{"children, past their limit", 4000, 2, false, 1100, "use more --procs"},
		{"children, and the server here", 1000, 2, true, 1100, ""},
		{"children, and the server here past its limit", 2000, 2, true, 1100, "the embedded server's ends of 2000 connections"},
		{"children, and a server elsewhere", 2000, 2, false, 1100, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := checkOpenFiles(tt.users, tt.procs, tt.embedded, tt.limit)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want one about %q", err, tt.want)
			}
		})
	}
}
