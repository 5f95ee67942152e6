package transport

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardchat/shardchat/transport/auth"
	"github.com/shardchat/shardchat/transport/wire"
)

// Metrics are the Prometheus collectors of the transport. Labels are bounded: error codes,
// close codes and refusal reasons, never a room or a user.
type Metrics struct {
	connections      *prometheus.GaugeVec   // transport
	connectionsTotal *prometheus.CounterVec // transport
	upgradesRefused  *prometheus.CounterVec
	received         *prometheus.CounterVec // transport
	messages         *prometheus.CounterVec // transport
	framesWritten    prometheus.Counter
	bytesWritten     prometheus.Counter
	slowConsumers    prometheus.Counter
	typingDropped    prometheus.Counter
	refused          *prometheus.CounterVec // code, transport
	closes           *prometheus.CounterVec // code, transport
	pingTimeouts     *prometheus.CounterVec // transport
	parked           prometheus.Gauge

	protos map[string]*protoMetrics // static after NewMetrics
}

// protoMetrics are the series of one protocol (the transport label), resolved once.
type protoMetrics struct {
	name             string
	connections      prometheus.Gauge
	connectionsTotal prometheus.Counter
	received         prometheus.Counter
	messages         prometheus.Counter
	closes           *prometheus.CounterVec
	pingTimeouts     prometheus.Counter
}

// transports are the values of the transport label.
var transports = []string{"ws", "socketio"}

func (m *Metrics) forProto(name string) *protoMetrics { return m.protos[name] }

func (p *protoMetrics) closed(code wire.CloseCode) {
	p.closes.WithLabelValues(strconv.Itoa(int(code)), p.name).Inc()
}

// Reasons an upgrade is refused, the values of the reason label.
const (
	refuseMaxConns = "max_conns"
	refuseOrigin   = "origin"
	refuseDraining = "draining"
	refuseUpgrade  = "bad_upgrade"
	refuseIPConns  = "ip_conns" // --max-conns-per-ip
	refuseIPRate   = "ip_rate"  // --connect-rate-per-ip
	refuseIPTable  = "ip_table" // too many client addresses at once to track
	// The token refusals are auth.Reason metrics: token_missing, token_expired, ...
)

// NewMetrics creates the transport collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shardchat_connections",
			Help: "Open WebSocket sessions, by transport (ws: the native protocol, socketio).",
		}, []string{"transport"}),
		connectionsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardchat_connections_total",
			Help: "WebSocket sessions opened since start, by transport.",
		}, []string{"transport"}),
		upgradesRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardchat_upgrades_refused_total",
			Help: "WebSocket upgrades refused before a session started, by reason.",
		}, []string{"reason"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardchat_frames_received_total",
			Help: "Client frames read, by transport.",
		}, []string{"transport"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardchat_messages_received_total",
			Help: "Chat messages received from clients and passed on to be ordered (refused ones are not counted), by transport.",
		}, []string{"transport"}),
		framesWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardchat_frames_written_total",
			Help: "WebSocket frames written to clients; each may carry several objects.",
		}),
		bytesWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardchat_written_bytes_total",
			Help: "Payload bytes written to clients.",
		}),
		slowConsumers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardchat_slow_consumers_total",
			Help: "Sessions closed with 4008 because their queue was full.",
		}),
		typingDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shardchat_typing_dropped_total",
			Help: "Typing objects dropped for members whose queue was more than half full.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardchat_requests_refused_total",
			Help: "Client requests answered with an error, by error code and transport.",
		}, []string{"code", "transport"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardchat_closes_total",
			Help: "Sessions closed by the server, by WebSocket close code and transport.",
		}, []string{"code", "transport"}),
		pingTimeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shardchat_ping_timeouts_total",
			Help: "Sessions dropped because the client did not answer a ping within the ping timeout (no close frame: the client is taken for gone), by transport.",
		}, []string{"transport"}),
		parked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shardchat_parked_connections",
			Help: "Open sessions whose client is idle and that hold no goroutine: their socket waits in the server's epoll set (Linux).",
		}),
		protos: make(map[string]*protoMetrics),
	}
	for _, t := range transports {
		for _, code := range wire.Codes() {
			m.refused.WithLabelValues(string(code), t)
		}
		for _, code := range wire.CloseCodes() {
			m.closes.WithLabelValues(strconv.Itoa(int(code)), t)
		}
		m.protos[t] = &protoMetrics{
			name:             t,
			connections:      m.connections.WithLabelValues(t),
			connectionsTotal: m.connectionsTotal.WithLabelValues(t),
			received:         m.received.WithLabelValues(t),
			messages:         m.messages.WithLabelValues(t),
			closes:           m.closes,
			pingTimeouts:     m.pingTimeouts.WithLabelValues(t),
		}
	}
	for _, reason := range []string{refuseMaxConns, refuseOrigin, refuseDraining, refuseUpgrade, refuseIPConns, refuseIPRate, refuseIPTable} {
		m.upgradesRefused.WithLabelValues(reason)
	}
	for _, reason := range auth.Reasons() {
		m.upgradesRefused.WithLabelValues(reason.Metric)
	}
	reg.MustRegister(m.connections, m.connectionsTotal, m.upgradesRefused, m.received, m.messages, m.framesWritten,
		m.bytesWritten, m.slowConsumers, m.typingDropped, m.refused, m.closes, m.pingTimeouts, m.parked)
	return m
}
