package main

import (
	"bufio"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shardchat/shardchat/internal/testprog"
	"github.com/shardchat/shardchat/transport/wire"
)

// TestPrometheusScrapes runs Debian's prometheus against a running shardchat: the target is
// up, and the counters of a chat show in Prometheus.
func TestPrometheusScrapes(t *testing.T) {
	host := startServe(t)
	prom := testprog.Prometheus(t, fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: shardchat
    static_configs:
      - targets: [%q]
`, host.addr))

	c := dialWS(t, "ws://"+host.addr+"/ws")
	c.send(wire.ClientRequest{Type: wire.TypeJoin, Room: "metrics", User: "ops"})
	c.nextOf(wire.TypeJoined)
	c.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "metrics", Text: "counted", Ref: "m"})
	c.nextOf(wire.TypeMessage)

	query := func(expr string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		samples, err := prom.Query(ctx, expr)
		switch {
		case err != nil:
			return err.Error()
		case len(samples) != 1:
			return fmt.Sprintf("%d samples", len(samples))
		case samples[0].Metric["instance"] != "" && samples[0].Metric["instance"] != host.addr:
			return "a sample of instance " + samples[0].Metric["instance"]
		}
		return strconv.FormatFloat(samples[0].Value, 'g', -1, 64)
	}
	for _, q := range []struct{ expr, want string }{
		{`up{job="shardchat"}`, "1"},
		// Summed, since other labels (such as a transport) may split them.
		{`sum(shardchat_messages_total{job="shardchat"})`, "1"},
		{`sum(shardchat_connections{job="shardchat"})`, "1"},
		{`sum(shardchat_deliveries_total{job="shardchat"}) > 0`, "1"},
	} {
		// Scrapes come every second; give a loaded machine time for a few.
		deadline := time.Now().Add(30 * time.Second)
		for got := query(q.expr); got != q.want; got = query(q.expr) {
			if time.Now().After(deadline) {
				t.Fatalf("Prometheus answers %s with %s, want %s", q.expr, got, q.want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// TestAlertRules checks the shipped Prometheus files with promtool: the scrape config and its
// rules load, the rule tests pass, and every shardchat_ metric the rules use is one that a
// host with Redis serves.
func TestAlertRules(t *testing.T) {
	promtool := testprog.Need(t, "promtool")
	for _, args := range [][]string{
		{"check", "config", "prometheus.yml"},
		{"check", "rules", "shardchat.rules.yml"},
		{"test", "rules", "shardchat.rules.test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "deploy"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	rules, err := os.ReadFile("deploy/shardchat.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	redis := testprog.Redis(t)
	host := startServe(t, "--redis-url", redis.URL())
	resp, err := http.Get("http://" + host.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (shardchat_\w+) (\w+)`).FindAllStringSubmatch(string(body), -1) {
		served[m[1]] = true
		if m[2] == "histogram" {
			served[m[1]+"_bucket"] = true
		}
	}
	used := regexp.MustCompile(`shardchat_\w+`).FindAllString(string(rules), -1)
	if len(used) == 0 {
		t.Fatal("the rules use no shardchat_ metric")
	}
	for _, name := range used {
		if !served[name] {
			t.Errorf("deploy/shardchat.rules.yml uses %s, which /metrics does not serve", name)
		}
	}
}

// TestHealthcheck runs `shardchat healthcheck` as Docker's HEALTHCHECK does: 0 against a
// ready server; 1, with one line on stderr, against a draining one, an absent one, and a URL
// that does not answer 200.
func TestHealthcheck(t *testing.T) {
	bin := binary(t)
	check := func(url string) (int, string) {
		t.Helper()
		cmd := exec.Command(bin, "healthcheck", "--url", url, "--timeout", "5s")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		switch {
		case err == nil:
			return 0, stderr.String()
		case errors.As(err, &exit):
			return exit.ExitCode(), stderr.String()
		}
		t.Fatalf("run healthcheck: %v", err)
		return 0, ""
	}
	wantFailure := func(what string, code int, stderr string) {
		t.Helper()
		if code != 1 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || strings.TrimSpace(stderr) == "" {
			t.Errorf("%s: exit %d with %q, want exit 1 with one line", what, code, stderr)
		} else {
			t.Logf("%s: %s", what, strings.TrimSpace(stderr))
		}
	}

	p := startServe(t, "--shutdown-timeout", "60s")
	ready := "http://" + p.addr + "/readyz"
	if code, stderr := check(ready); code != 0 || stderr != "" {
		t.Fatalf("ready server: exit %d with %q, want 0 and nothing", code, stderr)
	}
	code, stderr := check("http://" + p.addr + "/no-such-page")
	wantFailure("404", code, stderr)
	code, stderr = check("http://127.0.0.1:" + strconv.Itoa(testprog.FreePort(t)) + "/readyz")
	wantFailure("absent server", code, stderr)

	// A session that never reads keeps the server draining: it waits for the close
	// handshake that this client never answers.
	c := dialWS(t, "ws://"+p.addr+"/ws")
	c.send(wire.ClientRequest{Type: wire.TypeJoin, Room: "r", User: "idle"})
	c.nextOf(wire.TypeJoined)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "/readyz stops answering 200", func() bool {
		resp, err := http.Get(ready)
		if err != nil {
			return true
		}
		resp.Body.Close()
		return resp.StatusCode != http.StatusOK
	})
	code, stderr = check(ready)
	select {
	case err := <-p.exited:
		t.Fatalf("the server exited (%v) before the healthcheck was over; it should still be draining", err)
	default:
	}
	wantFailure("draining server", code, stderr)
	if err := p.stop(t); err != nil {
		t.Errorf("exit after draining: %v, want 0", err)
	}
}

// TestSystemdUnit checks deploy/shardchat.service: systemd-analyze verify finds nothing to
// say (it exits 0 on unknown keys and bad values, so any remark about the unit fails), and the
// settings that keep a deploy safe are there.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("deploy/shardchat.service")
	if err != nil {
		t.Fatal(err)
	}
	settings := unitSettings(t, string(unit))
	want := map[string]string{
		"ExecStart":       "/usr/local/bin/shardchat serve",
		"User":            "shardchat",
		"Restart":         "always",
		"KillSignal":      "SIGTERM",
		"EnvironmentFile": "-/etc/shardchat/shardchat.env",
		"NoNewPrivileges": "yes",
		"ProtectSystem":   "strict",
		"ProtectHome":     "yes",
		"PrivateTmp":      "yes",
	}
	for key, value := range want {
		if got := settings[key]; !slices.Contains(got, value) {
			t.Errorf("%s=%q, want %q", key, got, value)
		}
	}
	if n, err := strconv.Atoi(lastValue(settings["LimitNOFILE"])); err != nil || n < 65536 {
		t.Errorf("LimitNOFILE=%v: want at least 65536, one per connection", settings["LimitNOFILE"])
	}
	// systemd's SIGKILL must never cut the drain: the stop timeout is above the server's.
	drain := 10 * time.Second // serve's default
	for _, env := range settings["Environment"] {
		if v, ok := strings.CutPrefix(env, "SHARDCHAT_SHUTDOWN_TIMEOUT="); ok {
			if drain, err = time.ParseDuration(v); err != nil {
				t.Fatalf("Environment=%s: %v", env, err)
			}
		}
	}
	stop, err := time.ParseDuration(lastValue(settings["TimeoutStopSec"]))
	if err != nil || stop <= drain+2*time.Second {
		t.Errorf("TimeoutStopSec=%v: want a duration well above the shutdown timeout %v", settings["TimeoutStopSec"], drain)
	}

	analyze := testprog.Need(t, "systemd-analyze")
	verify := func(name, unit string) string {
		t.Helper()
		dir := t.TempDir()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", path).CombinedOutput()
		var remarks []string
		for line := range strings.Lines(string(out)) {
			// Remarks about the unit name it; others are about this machine's systemd.
			if strings.Contains(line, name) {
				remarks = append(remarks, strings.TrimSpace(line))
			} else if strings.TrimSpace(line) != "" {
				t.Logf("systemd-analyze: %s", strings.TrimSpace(line))
			}
		}
		if err != nil {
			remarks = append(remarks, err.Error())
		}
		return strings.Join(remarks, "\n")
	}
	// verify wants ExecStart to exist: point it at the binary built for this test run.
	local := strings.Replace(string(unit), "ExecStart=/usr/local/bin/shardchat ", "ExecStart="+binary(t)+" ", 1)
	if remarks := verify("shardchat.service", local); remarks != "" {
		t.Errorf("systemd-analyze verify deploy/shardchat.service:\n%s", remarks)
	}
	// The check has teeth: a misspelt setting is remarked on.
	broken := strings.Replace(local, "NoNewPrivileges=", "NoNewPrivilege=", 1)
	if remarks := verify("shardchat.service", broken); !strings.Contains(remarks, "NoNewPrivilege") {
		t.Errorf("systemd-analyze verify said nothing of a misspelt key (%q); the check above proves nothing", remarks)
	}
}

// unitSettings reads the Key=Value lines of a unit file, each key with its values in order.
func unitSettings(t *testing.T, unit string) map[string][]string {
	t.Helper()
	settings := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(unit))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("unit line %q is not Key=Value", line)
		}
		settings[key] = append(settings[key], value)
	}
	return settings
}

func lastValue(values []string) string {
	if len(values) == 0 {
		return ""
	}
	return values[len(values)-1]
}

// TestDockerBuild does what the Dockerfile's build stage does, without Docker: it copies the
// build context that .dockerignore leaves, builds it with the Dockerfile's command, and checks
// that the binary is static, stamped, and knows the HEALTHCHECK's command line.
func TestDockerBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(dockerfile)
	for _, want := range []string{"CGO_ENABLED=0 go build", "EXPOSE 3000", "STOPSIGNAL SIGTERM", "-X main.version=${VERSION} -X main.commit=${COMMIT}"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if m := regexp.MustCompile(`(?m)^USER (\S+)`).FindAllStringSubmatch(df, -1); len(m) == 0 ||
		strings.HasPrefix(m[len(m)-1][1], "0") || strings.HasPrefix(m[len(m)-1][1], "root") {
		t.Errorf("Dockerfile: USER %v, want a non-root user in the final stage", m)
	}
	hc := regexp.MustCompile(`CMD \["/usr/local/bin/shardchat", "healthcheck"((?:, "[^"]*")*)\]`).FindStringSubmatch(df)
	if hc == nil {
		t.Fatal("Dockerfile: no HEALTHCHECK CMD running shardchat healthcheck")
	}
	hcArgs := []string{"healthcheck"}
	for _, a := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(hc[1], -1) {
		hcArgs = append(hcArgs, a[1])
	}
	if _, err := parse(t, hcArgs...); err != nil {
		t.Errorf("the HEALTHCHECK's command line %v does not parse: %v", hcArgs, err)
	}

	ignore, err := os.ReadFile(".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	excluded := dockerignore(t, string(ignore))
	buildContext := t.TempDir()
	copied := 0
	err = filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || path == "." {
			return err
		}
		if excluded(filepath.ToSlash(path)) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if d.Name() == "node_modules" {
				t.Errorf("the build context holds %s (npm packages for tests)", path)
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(buildContext, path), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		copied++
		return os.WriteFile(filepath.Join(buildContext, path), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{".git", "bin", "Dockerfile"} {
		if _, err := os.Stat(filepath.Join(buildContext, gone)); err == nil {
			t.Errorf("the build context holds %s", gone)
		}
	}

	out := filepath.Join(t.TempDir(), "shardchat")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=v0.0.0-docker -X main.commit=c0ffee", "-o", out, ".")
	cmd.Dir = buildContext
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build in the build context (%d files): %v\n%s", copied, err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Error("the binary has a dynamic loader: it is not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs %v", libs)
	}
	version, err := exec.Command(out, "version").Output()
	if err != nil || !strings.HasPrefix(string(version), "shardchat v0.0.0-docker (commit c0ffee, go") {
		t.Errorf("shardchat version: %q, %v", version, err)
	}
}

// dockerignore returns whether the build context leaves out a path (slash-separated,
// relative), with Docker's rules: the last matching pattern wins, "!" re-includes, "**"
// matches any number of directories, and a pattern that matches a directory leaves out all
// under it.
func dockerignore(t *testing.T, file string) func(string) bool {
	t.Helper()
	type rule struct {
		re      *regexp.Regexp
		include bool
	}
	var rules []rule
	for line := range strings.Lines(file) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		r := rule{}
		if r.include = line[0] == '!'; r.include {
			line = line[1:]
		}
		line = strings.TrimPrefix(filepath.ToSlash(filepath.Clean(line)), "/")
		var re strings.Builder
		for i := 0; i < len(line); i++ {
			switch {
			case strings.HasPrefix(line[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(line[i:], "**"):
				re.WriteString(".*")
				i++
			case line[i] == '*':
				re.WriteString("[^/]*")
			case line[i] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(line[i : i+1]))
			}
		}
		r.re = regexp.MustCompile("^" + re.String() + "(/.*)?$")
		rules = append(rules, r)
	}
	return func(path string) bool {
		out := false
		for _, r := range rules {
			if r.re.MatchString(path) {
				out = !r.include
			}
		}
		return out
	}
}

// TestDeployFilesAgree checks that the deploy files name the same hosts: the upstreams of
// nginx.conf are services of compose.yaml and targets of prometheus.yml, compose gives a
// host more time to stop than the host gives its sessions to drain, and the hosts trust the
// X-Forwarded-For of compose's network, where nginx is (else every client counts as nginx's
// one address for the per-address limits).
func TestDeployFilesAgree(t *testing.T) {
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("deploy", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	nginx, compose, prom := read("nginx.conf"), read("compose.yaml"), read("prometheus.yml")
	upstreams := regexp.MustCompile(`(?m)^\s*server ([\w.-]+):(\d+)`).FindAllStringSubmatch(nginx, -1)
	if len(upstreams) < 2 {
		t.Fatalf("nginx.conf has %d upstream servers, want the two of compose.yaml", len(upstreams))
	}
	for _, u := range upstreams {
		if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(u[1]) + `:$`).MatchString(compose) {
			t.Errorf("nginx.conf sends to %s, which is not a service of compose.yaml", u[1])
		}
		if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(u[1]) + `:\n    <<: \*shardchat$`).MatchString(compose) {
			t.Errorf("compose.yaml: service %s does not take the settings of x-shardchat", u[1])
		}
		if !strings.Contains(prom, "- "+u[1]+":"+u[2]) {
			t.Errorf("prometheus.yml does not scrape %s:%s", u[1], u[2])
		}
	}
	if !strings.Contains(compose, "./nginx.conf:/etc/nginx/nginx.conf:ro") {
		t.Error("compose.yaml does not mount deploy/nginx.conf into nginx")
	}
	if !strings.Contains(compose, `"healthcheck", "--url", "http://127.0.0.1:3000/readyz"`) {
		t.Error("compose.yaml's shardchat health check does not run shardchat healthcheck against /readyz")
	}
	duration := func(pattern string) time.Duration {
		t.Helper()
		m := regexp.MustCompile(pattern).FindStringSubmatch(compose)
		if m == nil {
			t.Fatalf("compose.yaml lacks %s", pattern)
		}
		d, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatalf("compose.yaml: %s: %v", m[0], err)
		}
		return d
	}
	anchor := regexp.MustCompile(`(?ms)^x-shardchat: &shardchat$.*?^\S`).FindString(compose)
	proxies := regexp.MustCompile(`(?m)^    SHARDCHAT_TRUSTED_PROXIES: (\S+)$`).FindStringSubmatch(anchor)
	subnets := regexp.MustCompile(`(?ms)^networks:\n  default:\n    ipam:\n      config:\n        - subnet: (\S+)$`).FindStringSubmatch(compose)
	nginxAddr := regexp.MustCompile(`(?ms)^  nginx:\n.*?^        ipv4_address: (\S+)`).FindStringSubmatch(compose)
	switch {
	case proxies == nil:
		t.Error("compose.yaml: x-shardchat sets no SHARDCHAT_TRUSTED_PROXIES: behind nginx every client would count as nginx's address")
	case subnets == nil || nginxAddr == nil:
		t.Error("compose.yaml: nginx has no fixed address on a fixed subnet for SHARDCHAT_TRUSTED_PROXIES to name")
	default:
		// nginx alone: trusting the subnet trusts its gateway too, through which a client
		// could hand the server an X-Forwarded-For of its own making.
		trusted, err1 := netip.ParsePrefix(proxies[1])
		subnet, err2 := netip.ParsePrefix(subnets[1])
		addr, err3 := netip.ParseAddr(nginxAddr[1])
		if err := errors.Join(err1, err2, err3); err != nil || trusted != netip.PrefixFrom(addr, addr.BitLen()) || !subnet.Contains(addr) {
			t.Errorf("compose.yaml: SHARDCHAT_TRUSTED_PROXIES %s, nginx at %s on %s; want nginx's address alone, inside the subnet (%v)", proxies[1], nginxAddr[1], subnets[1], err)
		}
	}
	drain := duration(`SHARDCHAT_SHUTDOWN_TIMEOUT: (\S+)`)
	if grace := duration(`stop_grace_period: (\S+)`); grace <= drain+2*time.Second {
		t.Errorf("compose.yaml: stop_grace_period %v, want well above SHARDCHAT_SHUTDOWN_TIMEOUT %v", grace, drain)
	}
}
