package transport

import (
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkLoopbackWrite measures the floor under the seed scenario's server CPU: what one
// 150-byte write to a loopback TCP socket costs the writing thread, kernel time included, with
// nothing of shardchat around it. On loopback the writer's system call also runs the
// receiver's TCP work and wakes it, so a delivery costs the server more here than behind a
// network card. "lone" paces the writes as seed does (a message to a room of 50 every 2 ms,
// the readers idle in between); "back-to-back" writes as fast as it can, as fanout does.
// cpu-ns/write is the writing thread's user and system time (RUSAGE_THREAD) a write.
func BenchmarkLoopbackWrite(b *testing.B) {
	const conns, room = 500, 50
	for _, tc := range []struct {
		name string
		pace time.Duration
	}{{"lone", 2 * time.Millisecond}, {"back-to-back", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			var readers sync.WaitGroup
			defer readers.Wait()
			servers := make([]net.Conn, conns)
			for i := range servers {
				client, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				readers.Go(func() { _, _ = io.Copy(io.Discard, client); client.Close() })
				if servers[i], err = ln.Accept(); err != nil {
					b.Fatal(err)
				}
				defer servers[i].Close()
			}
			msg := make([]byte, 150)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			start := threadCPU(b)
			b.ResetTimer()
			for i := range b.N {
				if tc.pace > 0 && i > 0 && i%room == 0 {
					time.Sleep(tc.pace)
				}
				if _, err := servers[i%conns].Write(msg); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(threadCPU(b)-start)/float64(b.N), "cpu-ns/write")
		})
	}
}

// threadCPU is the calling thread's user and system time.
func threadCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
