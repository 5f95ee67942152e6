package shard

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Prometheus collectors of all shards of a process. One Metrics is shared by
// every shard; each shard adds its inbox depth under its own shard label.
type Metrics struct {
	reg prometheus.Registerer

	rooms      prometheus.Gauge
	idleRooms  prometheus.Gauge
	messages   prometheus.Counter
	deliveries prometheus.Counter
	fanout     prometheus.Histogram
	panics     prometheus.Counter
}

// NewMetrics creates the shard collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: reg,
		rooms: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shardchat_rooms",
			Help: "Rooms with at least one member on this host.",
		}),
		idleRooms: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shardchat_rooms_idle",
			Help: "Rooms without members whose history is still kept.",
		}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardchat_messages_total",
			Help: "Chat messages ordered and fanned out.",
		}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardchat_deliveries_total",
			Help: "Chat messages handed to members (one per message and recipient).",
		}),
		fanout: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shardchat_fanout_duration_seconds",
			Help:    "Time a shard takes to hand one message to every member of its room.",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10), // 1µs to 262ms
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardchat_shard_panics_total",
			Help: "Panics recovered while a shard handled a command.",
		}),
	}
	reg.MustRegister(m.rooms, m.idleRooms, m.messages, m.deliveries, m.fanout, m.panics)
	return m
}

// registerShard adds the inbox gauges of one shard: its depth, and its capacity, which
// InboxFor sets by the number of shards, so that an alert can ask how full it is.
func (m *Metrics) registerShard(id int, capacity int, depth func() float64) {
	labels := prometheus.Labels{"shard": strconv.Itoa(id)}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "shardchat_shard_inbox_depth",
		Help:        "Commands waiting in a shard's inbox.",
		ConstLabels: labels,
	}, depth))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "shardchat_shard_inbox_capacity",
		Help:        "Commands a shard's inbox holds.",
		ConstLabels: labels,
	}, func() float64 { return float64(capacity) }))
}
