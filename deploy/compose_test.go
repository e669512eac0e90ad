package deploy_test

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// No Docker engine runs in the tests: docker-compose.yml, the Dockerfile and
// the files they mount are parsed and checked against each other instead.

// composeFile is the parts of docker-compose.yml the checks read, after
// YAML anchors are resolved and ${VAR:-default} interpolated with defaults.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string         `yaml:"image"`
	Build       any            `yaml:"build"`
	Command     any            `yaml:"command"`
	Environment any            `yaml:"environment"`
	Ports       []any          `yaml:"ports"`
	Volumes     []any          `yaml:"volumes"`
	DependsOn   any            `yaml:"depends_on"`
	Profiles    []string       `yaml:"profiles"`
	Healthcheck map[string]any `yaml:"healthcheck"`
}

// env answers the service's environment, from the map or the list form.
func (s composeService) env() map[string]string {
	out := map[string]string{}
	switch e := s.Environment.(type) {
	case map[string]any:
		for k, v := range e {
			if v != nil {
				out[k] = fmt.Sprint(v)
			}
		}
	case []any:
		for _, kv := range e {
			k, v, _ := strings.Cut(fmt.Sprint(kv), "=")
			out[k] = v
		}
	}
	return out
}

// args answers the command as a list.
func (s composeService) args() []string {
	switch c := s.Command.(type) {
	case string:
		return strings.Fields(c)
	case []any:
		var out []string
		for _, a := range c {
			out = append(out, fmt.Sprint(a))
		}
		return out
	}
	return nil
}

// flag answers the value of --name=value in the command ("" when absent).
func (s composeService) flag(name string) string {
	for _, a := range s.args() {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

// containerPorts answers the container side of each published port.
func (s composeService) containerPorts() []string {
	var out []string
	for _, p := range s.Ports {
		switch p := p.(type) {
		case map[string]any:
			out = append(out, fmt.Sprint(p["target"]))
		default:
			spec := fmt.Sprint(p)
			spec, _, _ = strings.Cut(spec, "/")
			parts := strings.Split(spec, ":")
			out = append(out, parts[len(parts)-1])
		}
	}
	return out
}

// mount is one volume of a service.
type mount struct {
	bind           bool
	source, target string
}

func (s composeService) mounts() []mount {
	var out []mount
	for _, v := range s.Volumes {
		switch v := v.(type) {
		case map[string]any:
			out = append(out, mount{bind: v["type"] == "bind", source: fmt.Sprint(v["source"]), target: fmt.Sprint(v["target"])})
		default:
			parts := strings.Split(fmt.Sprint(v), ":")
			m := mount{source: parts[0]}
			if len(parts) > 1 {
				m.target = parts[1]
			} else {
				m.source, m.target = "", parts[0] // anonymous volume
			}
			m.bind = strings.HasPrefix(m.source, ".") || strings.HasPrefix(m.source, "/") || strings.HasPrefix(m.source, "~")
			out = append(out, m)
		}
	}
	return out
}

// hostPath answers the host path (relative to the repository) that
// containerPath comes from, through the innermost bind mount holding it.
func (s composeService) hostPath(containerPath string) (string, bool) {
	var best mount
	for _, m := range s.mounts() {
		if m.bind && (containerPath == m.target || strings.HasPrefix(containerPath, m.target+"/")) && len(m.target) > len(best.target) {
			best = m
		}
	}
	if best.target == "" {
		return "", false
	}
	return path.Clean(path.Join(best.source, strings.TrimPrefix(containerPath, best.target))), true
}

var interpolationRe = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// interpolate resolves compose's ${VAR:-default}, ${VAR-default} and $VAR
// as they resolve without a .env file or any variable set: to the default,
// else empty. ${VAR:?err} without a value is an error, as in compose.
func interpolate(s string) (string, error) { return interpolateWith(s, nil) }

// interpolateWith resolves them as they resolve with the variables vars
// set (and no others).
func interpolateWith(s string, vars map[string]string) (string, error) {
	var err error
	out := interpolationRe.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		p := interpolationRe.FindStringSubmatch(m)
		name := p[1]
		if name == "" {
			name = p[4]
		}
		if v, ok := vars[name]; ok && (v != "" || !strings.HasPrefix(p[2], ":")) {
			return v
		}
		switch p[2] {
		case ":-", "-":
			return p[3]
		case ":?", "?":
			err = fmt.Errorf("%s requires a value: %s", p[1], p[3])
		}
		return ""
	})
	return out, err
}

// interpolateAll interpolates every string of a decoded YAML document with
// the variables vars set.
func interpolateAll(t *testing.T, v any, vars map[string]string) any {
	switch v := v.(type) {
	case string:
		s, err := interpolateWith(v, vars)
		if err != nil {
			t.Error(err)
		}
		return s
	case map[string]any:
		for k, e := range v {
			v[k] = interpolateAll(t, e, vars)
		}
	case []any:
		for i, e := range v {
			v[i] = interpolateAll(t, e, vars)
		}
	}
	return v
}

// readCompose reads docker-compose.yml as compose does without a .env file
// or any variable set.
func readCompose(t *testing.T) composeFile { return readComposeWith(t, nil) }

// readComposeWith reads docker-compose.yml as compose does with the
// variables vars set.
func readComposeWith(t *testing.T, vars map[string]string) composeFile {
	t.Helper()
	var raw map[string]any
	readYAML(t, "docker-compose.yml", &raw)
	interpolateAll(t, raw, vars)
	// Decode the interpolated document into the typed shape.
	var c composeFile
	remarshal(t, raw, &c)
	return c
}

// composePostgres answers the postgres profile's database settings: the
// user, password and database its postgres service creates, and the
// DATABASE_URL the service is given with OMNIMEMORY_DB_TYPE=postgresql.
func composePostgres(t *testing.T) (user, password, db, databaseURL string) {
	t.Helper()
	c := readComposeWith(t, map[string]string{"OMNIMEMORY_DB_TYPE": "postgresql"})
	pe, se := c.Services[svcPostgres].env(), c.Services[svcService].env()
	if se["OMNIMEMORY_DB_TYPE"] != "postgresql" {
		t.Fatalf("with OMNIMEMORY_DB_TYPE=postgresql set, the service's OMNIMEMORY_DB_TYPE is %q", se["OMNIMEMORY_DB_TYPE"])
	}
	return pe["POSTGRES_USER"], pe["POSTGRES_PASSWORD"], pe["POSTGRES_DB"], se["DATABASE_URL"]
}

func TestInterpolate(t *testing.T) {
	for in, want := range map[string]string{
		"${A:-x}":          "x",
		"${A-x}":           "x",
		"a${B}c":           "ac",
		"$A/b":             "/b",
		"$$HOME":           "$HOME",
		"http://${H:-h}:1": "http://h:1",
	} {
		if got, err := interpolate(in); err != nil || got != want {
			t.Errorf("interpolate(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := interpolate("${A:?set A}"); err == nil {
		t.Error("${A:?set A} without A: no error")
	}
}

// The services of the stack.
const (
	svcService      = "omnimemory-metrics"
	svcInflux       = "influxdb"
	svcPostgres     = "postgres"
	svcPrometheus   = "prometheus"
	svcAlertmanager = "alertmanager"
	svcGrafana      = "grafana"
)

// TestCompose cross-checks docker-compose.yml with the files it mounts and
// the services' settings.
func TestCompose(t *testing.T) {
	root := repoRoot(t)
	c := readCompose(t)
	for _, name := range []string{svcService, svcInflux, svcPrometheus, svcAlertmanager, svcGrafana} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("docker-compose.yml: no service %s", name)
		}
	}
	svc, influx, prom, am, grafana := c.Services[svcService], c.Services[svcInflux], c.Services[svcPrometheus], c.Services[svcAlertmanager], c.Services[svcGrafana]

	t.Run("mounts", func(t *testing.T) {
		for name, s := range c.Services {
			for _, m := range s.mounts() {
				switch {
				case m.bind:
					if filepath.IsAbs(m.source) || strings.HasPrefix(m.source, "~") || strings.HasPrefix(path.Clean(m.source), "..") {
						t.Errorf("%s: bind mount %s is outside the repository", name, m.source)
						continue
					}
					if _, err := os.Stat(filepath.Join(root, m.source)); err != nil {
						t.Errorf("%s: bind mount %s -> %s: %v", name, m.source, m.target, err)
					}
				case m.source != "":
					if _, ok := c.Volumes[m.source]; !ok {
						t.Errorf("%s: volume %s is not declared under volumes:", name, m.source)
					}
				}
			}
		}
	})

	t.Run("published ports", func(t *testing.T) {
		for name, want := range map[string]string{svcService: "8003", svcInflux: "8086", svcPrometheus: "9090", svcAlertmanager: "9093", svcGrafana: "3000"} {
			if !slices.Contains(c.Services[name].containerPorts(), want) {
				t.Errorf("%s publishes %v, want port %s", name, c.Services[name].containerPorts(), want)
			}
		}
	})

	t.Run("service", func(t *testing.T) {
		env := svc.env()
		if env["OMNIMEMORY_DB_TYPE"] != "influxdb" {
			t.Errorf("OMNIMEMORY_DB_TYPE = %q, want influxdb", env["OMNIMEMORY_DB_TYPE"])
		}
		// The service listens on the port it publishes.
		listen := env["OMNIMEMORY_LISTEN"]
		if listen == "" {
			listen = ":8003" // the default
		}
		if _, port, err := net.SplitHostPort(listen); err != nil || !slices.Contains(svc.containerPorts(), port) {
			t.Errorf("OMNIMEMORY_LISTEN %q (%v) is not a published port %v", listen, err, svc.containerPorts())
		}
		// INFLUXDB_URL names the influxdb service and the port it serves.
		u, err := url.Parse(env["INFLUXDB_URL"])
		if err != nil || u.Hostname() != svcInflux || !slices.Contains(influx.containerPorts(), u.Port()) {
			t.Errorf("INFLUXDB_URL %q: want http://%s:<one of %v>", env["INFLUXDB_URL"], svcInflux, influx.containerPorts())
		}
		if !dependsOn(svc, svcInflux) {
			t.Errorf("%s does not depend on %s", svcService, svcInflux)
		}
	})

	t.Run("postgres profile", func(t *testing.T) {
		pg, ok := c.Services[svcPostgres]
		if !ok {
			t.Fatalf("no service %s", svcPostgres)
		}
		if !slices.Equal(pg.Profiles, []string{"postgres"}) {
			t.Errorf("%s is in profiles %v, want [postgres]: the default stack runs on InfluxDB", svcPostgres, pg.Profiles)
		}
		if len(svc.Profiles) != 0 {
			t.Errorf("%s is in profiles %v; it runs in every stack", svcService, svc.Profiles)
		}
		if !strings.HasPrefix(pg.Image, "postgres:15") {
			t.Errorf("%s image %q, want postgres:15 (the version the tests run)", svcPostgres, pg.Image)
		}
		if pg.Healthcheck == nil {
			t.Errorf("%s has no healthcheck for the service to wait on", svcPostgres)
		}
		d, _ := svc.DependsOn.(map[string]any)
		dep, _ := d[svcPostgres].(map[string]any)
		if dep["condition"] != "service_healthy" || dep["required"] != false {
			t.Errorf("%s depends on %s as %v, want condition service_healthy and required false", svcService, svcPostgres, dep)
		}
		user, password, db, dbURL := composePostgres(t)
		u, err := url.Parse(dbURL)
		if err != nil {
			t.Fatalf("DATABASE_URL: %v", err)
		}
		pass, _ := u.User.Password()
		if u.Scheme != "postgresql" || u.Hostname() != svcPostgres || u.Port() != "5432" || u.User.Username() != user ||
			pass != password || u.Path != "/"+db || user == "" || password == "" || db == "" {
			t.Errorf("DATABASE_URL %s does not reach %s:5432 as POSTGRES_USER %q, POSTGRES_PASSWORD and POSTGRES_DB %q",
				u.Redacted(), svcPostgres, user, db)
		}
		if _, ok := c.Volumes["postgres-data"]; !ok || !slices.ContainsFunc(pg.mounts(), func(m mount) bool {
			return m.source == "postgres-data" && m.target == "/var/lib/postgresql/data"
		}) {
			t.Errorf("%s does not keep its data in the volume postgres-data", svcPostgres)
		}
		// Without the variable the service stays on InfluxDB (checked in
		// "service"); with it, TestStack runs the service with these
		// settings on a real PostgreSQL.
	})

	t.Run("influxdb credentials agree", func(t *testing.T) {
		se, ie, ge := svc.env(), influx.env(), grafana.env()
		if ie["DOCKER_INFLUXDB_INIT_MODE"] != "setup" {
			t.Errorf("DOCKER_INFLUXDB_INIT_MODE = %q, want setup", ie["DOCKER_INFLUXDB_INIT_MODE"])
		}
		if ie["DOCKER_INFLUXDB_INIT_USERNAME"] == "" {
			t.Error("DOCKER_INFLUXDB_INIT_USERNAME is empty")
		}
		if len(ie["DOCKER_INFLUXDB_INIT_PASSWORD"]) < 8 {
			t.Error("DOCKER_INFLUXDB_INIT_PASSWORD: InfluxDB's setup wants at least 8 characters")
		}
		for serviceVar, initVar := range map[string]string{
			"INFLUXDB_ORG":    "DOCKER_INFLUXDB_INIT_ORG",
			"INFLUXDB_BUCKET": "DOCKER_INFLUXDB_INIT_BUCKET",
			"INFLUXDB_TOKEN":  "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN",
		} {
			v := se[serviceVar]
			if v == "" {
				t.Errorf("%s: %s is empty", svcService, serviceVar)
			}
			if got := ie[initVar]; got != v {
				t.Errorf("influxdb's %s %q != the service's %s %q", initVar, got, serviceVar, v)
			}
			if got := ge[serviceVar]; got != v {
				t.Errorf("grafana's %s %q != the service's %q", serviceVar, got, v)
			}
		}
	})

	t.Run("grafana", func(t *testing.T) {
		checkGrafanaProvisioning(t, c, grafana)
	})

	t.Run("prometheus", func(t *testing.T) {
		configPath := prom.flag("config.file")
		if configPath == "" {
			configPath = "/etc/prometheus/prometheus.yml" // the image's default
		}
		host, ok := prom.hostPath(configPath)
		if !ok || host != "prometheus.yml" {
			t.Fatalf("%s reads %s, mounted from %q; want ./prometheus.yml", svcPrometheus, configPath, host)
		}
		var cfg struct {
			RuleFiles []string `yaml:"rule_files"`
			Alerting  struct {
				Alertmanagers []struct {
					StaticConfigs []struct {
						Targets []string `yaml:"targets"`
					} `yaml:"static_configs"`
				} `yaml:"alertmanagers"`
			} `yaml:"alerting"`
			ScrapeConfigs []struct {
				JobName       string `yaml:"job_name"`
				StaticConfigs []struct {
					Targets []string `yaml:"targets"`
				} `yaml:"static_configs"`
			} `yaml:"scrape_configs"`
		}
		readYAML(t, "prometheus.yml", &cfg)

		// Rule files resolve relative to the configuration, in the
		// container as in the repository, to the same files.
		for _, rf := range cfg.RuleFiles {
			inContainer := path.Join(path.Dir(configPath), rf)
			host, ok := prom.hostPath(inContainer)
			if !ok || host != path.Clean(rf) {
				t.Errorf("rule_files %s: in the container %s comes from %q, want %s", rf, inContainer, host, path.Clean(rf))
			}
			if m, _ := filepath.Glob(filepath.Join(root, rf)); len(m) == 0 {
				t.Errorf("rule_files %s matches nothing in the repository", rf)
			}
		}

		// The service's job scrapes the service at its port.
		var jobTargets []string
		for _, sc := range cfg.ScrapeConfigs {
			if sc.JobName == serviceJob {
				for _, st := range sc.StaticConfigs {
					jobTargets = append(jobTargets, st.Targets...)
				}
			}
		}
		listen := svc.env()["OMNIMEMORY_LISTEN"]
		if listen == "" {
			listen = ":8003"
		}
		_, port, _ := net.SplitHostPort(listen)
		if want := net.JoinHostPort(svcService, port); !slices.Equal(jobTargets, []string{want}) {
			t.Errorf("job %s scrapes %v, want [%s]", serviceJob, jobTargets, want)
		}

		// Alerts go to the alertmanager service, at the port it serves.
		var amTargets []string
		for _, a := range cfg.Alerting.Alertmanagers {
			for _, st := range a.StaticConfigs {
				amTargets = append(amTargets, st.Targets...)
			}
		}
		amListen := am.flag("web.listen-address")
		if amListen == "" {
			amListen = ":9093" // Alertmanager's default
		}
		_, amPort, _ := net.SplitHostPort(amListen)
		if want := net.JoinHostPort(svcAlertmanager, amPort); !slices.Equal(amTargets, []string{want}) {
			t.Errorf("alerting targets %v, want [%s]", amTargets, want)
		}
		if !slices.Contains(am.containerPorts(), amPort) {
			t.Errorf("%s serves on %s but publishes %v", svcAlertmanager, amPort, am.containerPorts())
		}
	})

	t.Run("alertmanager", func(t *testing.T) {
		configPath := am.flag("config.file")
		if configPath == "" {
			configPath = "/etc/alertmanager/alertmanager.yml"
		}
		if host, ok := am.hostPath(configPath); !ok || host != alertmanagerConfig {
			t.Errorf("%s reads %s, mounted from %q; want ./%s", svcAlertmanager, configPath, host, alertmanagerConfig)
		}
	})

	t.Run("build", func(t *testing.T) {
		checkDockerfile(t, svc)
	})
}

// dependsOn reports whether s starts after other.
func dependsOn(s composeService, other string) bool {
	switch d := s.DependsOn.(type) {
	case []any:
		return slices.Contains(d, any(other))
	case map[string]any:
		_, ok := d[other]
		return ok
	}
	return false
}

// checkGrafanaProvisioning: the dashboards folder is mounted where the
// dashboard provider reads, every ${VAR} of the provisioning files is set
// in Grafana's environment, and the data sources' URLs name services of
// the stack at the ports they serve.
func checkGrafanaProvisioning(t *testing.T, c composeFile, grafana composeService) {
	root := repoRoot(t)
	prov, ok := grafana.hostPath("/etc/grafana/provisioning")
	if !ok || prov != "grafana/provisioning" {
		t.Fatalf("grafana's /etc/grafana/provisioning comes from %q, want ./grafana/provisioning", prov)
	}
	files, _ := filepath.Glob(filepath.Join(root, "grafana", "provisioning", "*", "*.y*ml"))
	if len(files) == 0 {
		t.Fatal("grafana/provisioning/ holds no provisioning file")
	}
	env := grafana.env()
	varRe := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)
	expand := func(s string) string {
		return varRe.ReplaceAllStringFunc(strings.ReplaceAll(s, "$$", "\x00"), func(m string) string {
			p := varRe.FindStringSubmatch(m)
			return env[p[1]+p[2]]
		})
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			for _, m := range varRe.FindAllStringSubmatch(strings.ReplaceAll(line, "$$", ""), -1) {
				if env[m[1]+m[2]] == "" {
					t.Errorf("%s uses $%s%s, which grafana's environment does not set", rel, m[1], m[2])
				}
			}
		}
		var doc struct {
			Providers []struct {
				Options struct {
					Path string `yaml:"path"`
				} `yaml:"options"`
			} `yaml:"providers"`
			Datasources []struct {
				Name     string         `yaml:"name"`
				Type     string         `yaml:"type"`
				URL      string         `yaml:"url"`
				JSONData map[string]any `yaml:"jsonData"`
				Secure   map[string]any `yaml:"secureJsonData"`
			} `yaml:"datasources"`
		}
		readYAML(t, f, &doc)
		for _, p := range doc.Providers {
			if host, ok := grafana.hostPath(p.Options.Path); !ok || host != "grafana/dashboards" {
				t.Errorf("%s: dashboards path %s comes from %q, want ./grafana/dashboards", rel, p.Options.Path, host)
			}
		}
		for _, d := range doc.Datasources {
			u, err := url.Parse(expand(d.URL))
			if err != nil || u.Hostname() == "" {
				t.Errorf("%s: data source %s: url %q", rel, d.Name, d.URL)
				continue
			}
			target, ok := c.Services[u.Hostname()]
			if !ok {
				t.Errorf("%s: data source %s: %s is not a service of the stack", rel, d.Name, u.Hostname())
			} else if !slices.Contains(target.containerPorts(), u.Port()) {
				t.Errorf("%s: data source %s: port %s, %s serves %v", rel, d.Name, u.Port(), u.Hostname(), target.containerPorts())
			}
			if d.Type == "influxdb" {
				se := c.Services[svcService].env()
				for field, want := range map[string]string{
					"organization":  se["INFLUXDB_ORG"],
					"defaultBucket": se["INFLUXDB_BUCKET"],
				} {
					if got := expand(fmt.Sprint(d.JSONData[field])); got != want {
						t.Errorf("%s: data source %s: %s %q, the service writes to %q", rel, d.Name, field, got, want)
					}
				}
				if got := expand(fmt.Sprint(d.Secure["token"])); got != se["INFLUXDB_TOKEN"] {
					t.Errorf("%s: data source %s: token differs from the service's", rel, d.Name)
				}
			}
		}
	}
}

// checkDockerfile: the service is built from the repository's Dockerfile,
// whose build stage compiles the service's package statically with the Go
// version go.mod asks for, and whose runtime stage runs it unprivileged on
// port 8003; and that package builds.
func checkDockerfile(t *testing.T, svc composeService) {
	root := repoRoot(t)
	buildContext, dockerfile := ".", "Dockerfile"
	switch b := svc.Build.(type) {
	case string:
		buildContext = b
	case map[string]any:
		if s, ok := b["context"].(string); ok {
			buildContext = s
		}
		if s, ok := b["dockerfile"].(string); ok {
			dockerfile = s
		}
	default:
		t.Fatalf("%s has no build:", svcService)
	}
	if path.Clean(buildContext) != "." {
		t.Errorf("build context %s, want the repository (.)", buildContext)
	}
	b, err := os.ReadFile(filepath.Join(root, buildContext, dockerfile))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)

	build := regexp.MustCompile(`go build [^\n]*?(\./cmd/[A-Za-z0-9_./-]+)`).FindStringSubmatch(strings.ReplaceAll(df, "\\\n", " "))
	if build == nil {
		t.Fatal("Dockerfile: no `go build ... ./cmd/...`")
	}
	pkg := build[1]
	if pkg != "./cmd/omnimemory-metrics" {
		t.Errorf("Dockerfile builds %s, want ./cmd/omnimemory-metrics", pkg)
	}
	if !strings.Contains(df, "CGO_ENABLED=0") {
		t.Error("Dockerfile: the build is not static (CGO_ENABLED=0)")
	}
	// go build of that package works (into a temporary file).
	run(t, root, "go", "build", "-o", filepath.Join(t.TempDir(), "omnimemory-metrics"), pkg)
	checkDependencyLayer(t, root, df)

	// The build image's Go is the version go.mod asks for: the golang
	// images set GOTOOLCHAIN=local and would refuse an older one.
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go ([0-9.]+)$`).FindSubmatch(gomod)
	argVersion := regexp.MustCompile(`(?m)^ARG GO_VERSION=([0-9.]+)$`).FindStringSubmatch(df)
	if goVersion == nil || argVersion == nil || argVersion[1] != string(goVersion[1]) {
		t.Errorf("Dockerfile ARG GO_VERSION %v, go.mod's go %s", argVersion, goVersion)
	}
	if !regexp.MustCompile(`(?m)^FROM golang:\$\{GO_VERSION\}\S* AS build`).MatchString(df) {
		t.Error("Dockerfile: the build stage is not FROM golang:${GO_VERSION} AS build")
	}

	// The runtime stage: the last FROM.
	stages := regexp.MustCompile(`(?m)^FROM `).Split(df, -1)
	final := stages[len(stages)-1]
	user := regexp.MustCompile(`(?m)^USER (\S+)`).FindStringSubmatch(final)
	if user == nil || user[1] == "root" || strings.HasPrefix(user[1], "0") {
		t.Errorf("Dockerfile: the runtime stage runs as %v, want a non-root USER", user)
	}
	if !regexp.MustCompile(`(?m)^EXPOSE 8003\b`).MatchString(final) {
		t.Error("Dockerfile: the runtime stage does not EXPOSE 8003")
	}
}

// checkDependencyLayer replays the build stage up to its `go mod download`
// (the cached layer of the dependencies): only the files its COPY lines
// name before that step are in the folder then, and they must hold the
// go.mod of every module that go.mod's replace directives point at in this
// repository (the Go client's), or the download fails. It checks the files
// rather than running the download, which would need the network.
func checkDependencyLayer(t *testing.T, root, df string) {
	build := regexp.MustCompile(`(?m)^FROM `).Split(df, -1)[1]
	download := regexp.MustCompile(`(?m)^RUN .*go mod download`).FindStringIndex(build)
	if download == nil {
		t.Fatal("Dockerfile: the build stage has no RUN ... go mod download")
	}
	dir := t.TempDir()
	for _, m := range regexp.MustCompile(`(?m)^COPY +(.+)$`).FindAllStringSubmatch(build[:download[0]], -1) {
		args := strings.Fields(m[1])
		srcs, dest := args[:len(args)-1], args[len(args)-1]
		for _, src := range srcs {
			b, err := os.ReadFile(filepath.Join(root, src))
			if err != nil {
				t.Fatalf("Dockerfile: COPY %s before go mod download: %v", src, err)
			}
			to := filepath.Join(dir, dest)
			if strings.HasSuffix(dest, "/") || len(srcs) > 1 {
				to = filepath.Join(to, filepath.Base(src))
			}
			if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(to, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatalf("Dockerfile: go.mod is not copied before go mod download: %v", err)
	}
	local := regexp.MustCompile(`=>\s*(\.\.?/\S*)`).FindAllStringSubmatch(string(gomod), -1)
	if len(local) == 0 {
		t.Fatal("go.mod replaces no module with a folder of this repository: the Go client's module is expected there")
	}
	for _, m := range local {
		if _, err := os.Stat(filepath.Join(dir, m[1], "go.mod")); err != nil {
			t.Errorf("Dockerfile: go.mod replaces a module with %s, whose go.mod is not copied before go mod download", m[1])
		}
	}
}

// remarshal converts a decoded YAML document into the typed v.
func remarshal(t *testing.T, in, v any) {
	t.Helper()
	b, err := yaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}
