//go:build !linux

package transport

import (
	"errors"
	"log/slog"
)

// poller is Linux's epoll set of parked sessions (poller_linux.go). Elsewhere there is none:
// newPoller returns nil, and an idle reader waits on a goroutine of its own.
type poller struct{}

func newPoller(*slog.Logger) (*poller, error) { return nil, nil }

func (p *poller) arm(int, *session, bool) error { return errors.ErrUnsupported }
func (p *poller) disarm(int, uint64)            {}
func (p *poller) forget(uint64)                 {}
func (p *poller) close()                        {}
