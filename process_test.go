package main

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The binary is built once per test run, for every test that runs processes.
var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// binary builds shardchat from this tree and returns its path.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "shardchat-test-")
		if build.err != nil {
			return
		}
		build.path = filepath.Join(build.dir, "shardchat")
		out, err := exec.Command("go", "build", "-o", build.path, ".").CombinedOutput()
		if err != nil {
			build.err = err
			build.path = string(out)
		}
	})
	if build.err != nil {
		t.Fatalf("go build: %v\n%s", build.err, build.path)
	}
	return build.path
}

// serverProcess is a `shardchat serve` process of a test's own.
type serverProcess struct {
	cmd    *exec.Cmd
	addr   string
	exited chan error
}

// startServe runs `shardchat serve args...` on a free loopback port with JSON logs, waits
// until it listens, and stops it (SIGTERM, then SIGKILL) when the test ends.
func startServe(t *testing.T, args ...string) *serverProcess {
	t.Helper()
	cmd := exec.Command(binary(t), append([]string{"serve", "--addr", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serverProcess{cmd: cmd, exited: make(chan error, 1)}
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Addr != "" {
				addrCh <- line.Addr
				break
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	select {
	case p.addr = <-addrCh:
	case err := <-p.exited:
		p.exited <- err
		t.Fatalf("shardchat %v exited at start: %v", args, err)
	case <-time.After(20 * time.Second):
		t.Fatal("the server did not log its address")
	}
	return p
}

// stop sends SIGTERM and returns the exit error.
func (p *serverProcess) stop(t *testing.T) error {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		p.exited <- err // for the cleanup
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("no exit within 20s of SIGTERM")
	}
	return nil
}
