package hub

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/shardchat/shardchat/internal/testprog"
)

// startCluster starts three redis-servers as the masters of a Redis Cluster.
func startCluster(t *testing.T) []*testprog.RedisServer {
	t.Helper()
	cli := testprog.Need(t, "redis-cli")
	nodes := make([]*testprog.RedisServer, 3)
	addrs := make([]string, 3)
	for i := range nodes {
		nodes[i] = testprog.Redis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		addrs[i] = "127.0.0.1:" + strconv.Itoa(nodes[i].Port)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, n := range nodes {
		waitUntil(t, "cluster_state:ok", func() bool {
			out, err := exec.Command(cli, "-p", strconv.Itoa(n.Port), "cluster", "info").Output()
			return err == nil && strings.Contains(string(out), "cluster_state:ok")
		})
	}
	return nodes
}

func TestRedisCluster(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t)
	url := fmt.Sprintf("redis://127.0.0.1:%d,127.0.0.1:%d", nodes[0].Port, nodes[1].Port)
	hubs := make([]*redisHub, 3)
	for i := range hubs {
		hubs[i] = newRedisHub(t, url, "t:", fmt.Sprintf("host-%c", 'a'+i), nil)
		if !hubs[i].bridge.sharded {
			t.Fatal("the bridge did not see a cluster")
		}
	}
	const rooms, each = 12, 5
	members := make([]map[string]*member, rooms)
	var wg sync.WaitGroup
	for r := range rooms {
		room := fmt.Sprintf("room-%d", r)
		members[r] = map[string]*member{}
		for _, h := range hubs {
			m := &member{}
			members[r][h.node] = m
			h.mustJoin(t, m, room, h.node)
		}
		for _, h := range hubs {
			wg.Go(func() {
				for n := range each {
					if err := h.say(t, members[r][h.node], room, h.node, fmt.Sprintf("%s/%d", h.node, n)); err != nil {
						t.Errorf("%s in %s: %v", h.node, room, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	for r := range rooms {
		checkOrder(t, members[r], len(hubs)*each)
	}
	// The rooms spread over the masters: each holds some of their keys.
	for i, n := range nodes {
		reply, err := n.Command("DBSIZE")
		if err != nil {
			t.Fatal(err)
		}
		if size, _ := strconv.Atoi(strings.TrimPrefix(reply, ":")); size == 0 {
			t.Errorf("master %d holds no keys", i)
		}
	}
}
