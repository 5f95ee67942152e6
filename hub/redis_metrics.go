package hub

import "github.com/prometheus/client_golang/prometheus"

// redisMetrics are the collectors of the Redis bridge.
type redisMetrics struct {
	up               prometheus.Gauge
	errors           *prometheus.CounterVec
	publishSeconds   prometheus.Histogram
	publishBatchSize prometheus.Histogram
	subscriptions    prometheus.Gauge
	resubscribes     prometheus.Counter
	syncs            prometheus.Counter
	handoffDropped   prometheus.Counter
	rosters          prometheus.Counter
	pruned           prometheus.Counter
	probeLost        prometheus.Counter
}

// redisOps are the values of the op label of shardchat_bridge_errors_total. The _late ones
// count scripts that Redis ran after their caller gave up (they did nothing).
func redisOps() []string {
	return []string{"publish", "publish_late", "claim", "claim_late", "reclaim_conflict", "release", "typing",
		"users", "rooms", "state", "heartbeat", "prune", "subscribe", "probe", "payload", "roster"}
}

func newRedisMetrics(reg prometheus.Registerer) *redisMetrics {
	m := &redisMetrics{
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shardchat_bridge_up",
			Help: "1 while the Redis bridge works (its probe comes back and heartbeats succeed), else 0.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardchat_bridge_errors_total",
			Help: "Failed Redis operations of the bridge, by operation.",
		}, []string{"op"}),
		publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shardchat_bridge_publish_seconds",
			Help:    "Round trip of ordering one message in Redis, with its wait for the room's publish before it.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16), // 50µs to 1.6s
		}),
		publishBatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shardchat_bridge_publish_batch_messages",
			Help:    "Messages of a room ordered by one publish script: those that waited while the room's previous script ran.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 8), // 1 to 128, maxPublishBatch
		}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shardchat_bridge_subscriptions",
			Help: "Room channels this host listens to.",
		}),
		resubscribes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardchat_bridge_resubscribes_total",
			Help: "Room subscriptions made again after a connection loss or a lost probe.",
		}),
		syncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardchat_bridge_syncs_total",
			Help: "Room states read from Redis: first joins on this host, and gaps filled.",
		}),
		handoffDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardchat_bridge_handoff_dropped_total",
			Help: "Events from Redis not handed to a full shard; the shard fills the gap from the stream, and lost presence from the room's roster.",
		}),
		rosters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardchat_bridge_rosters_total",
			Help: "Room rosters published on their channels because this host may have missed presence of the room (a full shard, an unreadable payload, a lost subscription, a room whose first member here took its users from its claim).",
		}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardchat_bridge_pruned_users_total",
			Help: "Users of dead hosts taken out of rooms by this host.",
		}),
		probeLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardchat_bridge_probes_lost_total",
			Help: "Probes published that did not come back in time; each one resubscribes every room.",
		}),
	}
	for _, op := range redisOps() {
		m.errors.WithLabelValues(op)
	}
	reg.MustRegister(m.up, m.errors, m.publishSeconds, m.publishBatchSize, m.subscriptions, m.resubscribes, m.syncs, m.handoffDropped, m.rosters, m.pruned, m.probeLost)
	return m
}
