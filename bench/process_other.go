//go:build !unix

package bench

import "time"

// processCPU is unknown on this system; the report then shows no bench CPU.
func processCPU() time.Duration { return 0 }

// openFilesLimit is unknown on this system.
func openFilesLimit() uint64 { return 0 }
