// Package static holds the web UI, embedded into the binary.
package static

import (
	"embed"
	"io/fs"
)

//go:embed index.html
var files embed.FS

// FS returns the web UI's files, index.html at the root.
func FS() fs.FS { return files }
