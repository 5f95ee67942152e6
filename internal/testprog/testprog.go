// Package testprog starts the real programs that tests need (redis-server, nginx) on free
// loopback ports in temp dirs, and stops them when the test ends. A missing program skips
// the test with the reason, except under CI=true, where it fails: CI never skips silently.
package testprog

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Need returns the path of a program (the first of name and otherNames that is installed),
// skipping or failing the test when none is.
func Need(t testing.TB, name string, otherNames ...string) string {
	t.Helper()
	names := append([]string{name}, otherNames...)
	for _, candidate := range names {
		if path, err := exec.LookPath(candidate); err == nil {
			return path
		}
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
			if _, err := os.Stat(filepath.Join(dir, candidate)); err == nil {
				return filepath.Join(dir, candidate)
			}
		}
	}
	missing := strings.Join(names, " or ")
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (make test installs it)", missing)
	}
	t.Skipf("%s is not installed; make test installs it", missing)
	return ""
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// WaitTCP waits until something accepts connections on addr.
func WaitTCP(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing accepts connections on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RedisServer is a redis-server of a test's own.
type RedisServer struct {
	Port int
	t    testing.TB
	bin  string
	dir  string
	args []string
	cmd  *exec.Cmd
}

// Redis starts a redis-server that keeps its data across Stop and Start (append-only file,
// fsync always), with extra args, and stops it when the test ends.
func Redis(t testing.TB, args ...string) *RedisServer {
	t.Helper()
	r := &RedisServer{t: t, bin: Need(t, "redis-server"), dir: t.TempDir(), Port: FreePort(t), args: args}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// URL is the server's redis:// URL.
func (r *RedisServer) URL() string { return "redis://127.0.0.1:" + strconv.Itoa(r.Port) }

// Start starts the server (again) on its port and dir, and waits until it answers.
func (r *RedisServer) Start() {
	r.t.Helper()
	args := append([]string{
		"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "no",
	}, r.args...)
	r.cmd = exec.Command(r.bin, args...)
	r.cmd.Dir = r.dir
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if reply, err := r.Command("PING"); err == nil && reply == "+PONG" {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on port %d did not answer PING", r.Port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server and waits for it; its data stays for Start.
func (r *RedisServer) Stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// Command sends one command and returns the first line of the reply.
func (r *RedisServer) Command(args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(r.Port), time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

// Nginx runs nginx with the configuration conf (a whole nginx.conf) in the foreground, in a
// temp prefix, until the test ends.
func Nginx(t testing.TB, conf string) {
	t.Helper()
	bin := Need(t, "nginx")
	dir := t.TempDir()
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	global := fmt.Sprintf("daemon off; pid %s/nginx.pid; error_log stderr warn;", dir)
	cmd := exec.Command(bin, "-p", dir, "-c", path, "-e", "stderr", "-g", global)
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
}

// testWriter passes a program's output to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
