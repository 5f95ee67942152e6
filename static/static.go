// Package static holds the web UI: index.html, style.css and app.js, plain HTML, CSS and
// JavaScript with no build step, embedded into the binary. transport serves them on / with
// an ETag per file, so a new binary's UI is picked up at once.
package static

import (
	"embed"
	"io/fs"
)

//go:embed index.html style.css app.js
var files embed.FS

// FS returns the web UI's files, index.html at the root.
func FS() fs.FS { return files }
