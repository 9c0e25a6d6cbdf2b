package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// config is the server configuration. Precedence, lowest first: defaults,
// the YAML file named by --config, OFFSHOOT_* environment variables, flags.
type config struct {
	// DataDir holds the store, the run directory and logs.
	// Default: $OFFSHOOT_DATA_DIR, else ~/.local/share/offshoot.
	DataDir string `yaml:"data_dir"`
	// HTTPAddr is where the HTTP API, MCP and web UI listen. Default 127.0.0.1:8432.
	HTTPAddr string `yaml:"http_addr"`
	// ProxyAddr is where the pgwire proxy listens. Default 127.0.0.1:55432.
	ProxyAddr string `yaml:"proxy_addr"`
	// ProxyPath is how the proxy relays a connection once it is ready for
	// queries: auto (the kernel, through a BPF sockmap, where the host and
	// connection allow it; else the copy loop) or copy (the copy loop
	// always). Default auto.
	ProxyPath string `yaml:"proxy_path,omitempty"`
	// WALPath is where endpoints write their WAL: local (a directory on
	// the data dir's disk that the store absorbs before every commit;
	// docs/wal-tier.md) or store (through the mount, like every other
	// file). Default local, or store when the run dir is not on the data
	// dir's file system.
	WALPath string `yaml:"wal_path,omitempty"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `yaml:"log_level"`
	// LogFormat is text or json. Default text.
	LogFormat string `yaml:"log_format"`
	// Prices, when any price is set, turns usage into estimated costs.
	Prices pricesConfig `yaml:"prices,omitempty"`
	// DatasetsDir holds the BEIR datasets experiment specs may name
	// (dataset.beir must lie inside it). Default <data-dir>/datasets.
	DatasetsDir string `yaml:"datasets_dir,omitempty"`
	// WebhookAllow lists CIDRs, addresses or host names that schedule
	// webhooks may reach although loopback or link-local. Default none.
	WebhookAllow []string `yaml:"webhook_allow,omitempty"`
	// AuditSQL is text (the default) or hash: what audit entries keep of
	// the SQL of queries.
	AuditSQL string `yaml:"audit_sql,omitempty"`
	// ObjectStore, when its URL is set, uploads the data dir to an
	// S3-compatible bucket (see objectStoreConfig). Default off.
	ObjectStore objectStoreConfig `yaml:"object_store,omitempty"`
}

// addServerFlags adds the flags of a command that runs a server (serve,
// and mcp, which may run one in its process).
func addServerFlags(cmd *cobra.Command, a *app) {
	f := cmd.Flags()
	f.StringVar(&a.cfg.DatasetsDir, "datasets-dir", "", "BEIR datasets (one directory each): list_datasets reports them and experiment specs may only name these (default <data-dir>/datasets; env OFFSHOOT_DATASETS_DIR)")
	f.StringSliceVar(&a.cfg.WebhookAllow, "webhook-allow", nil, "CIDRs, addresses or host names schedule webhooks may reach although loopback or link-local (repeat or comma-separate; config webhook_allow)")
	f.StringVar(&a.cfg.ObjectStore.URL, "s3", "", "upload the data dir to this S3 bucket, s3://bucket[/prefix] (default off; env OFFSHOOT_S3_URL; config object_store.url)")
	f.DurationVar(&a.cfg.ObjectStore.Interval, "s3-interval", 0, "time between uploads to the bucket: the recovery point (default 10s)")
	f.DurationVar(&a.cfg.ObjectStore.Keep, "s3-keep", 0, "how long past uploads stay restorable (restore --at/--generation): all of the last hour, then one an hour; older ones and their files are deleted from the bucket (default 0: keep every upload)")
	addObjectStoreFlags(cmd, &a.cfg.ObjectStore)
	f.StringVar(&a.cfg.WALPath, "wal-path", "", "where endpoints write their WAL: local (<run-dir>/wal on the data dir's disk, absorbed by the store before every commit; docs/wal-tier.md) or store (through the mount) (default local, or store when the run dir is on another file system; env OFFSHOOT_WAL_PATH; config wal_path)")
	f.StringVar(&a.cfg.ProxyPath, "proxy-path", "", "how the proxy relays a ready connection: auto (in the kernel where possible) or copy (its user-space copy loop always) (default auto; env OFFSHOOT_PROXY_PATH)")
	f.StringVar(&a.cfg.AuditSQL, "audit-sql", "", "what audit entries keep of a query's SQL: text or hash (SHA-256) (default text; env OFFSHOOT_AUDIT_SQL)")
}

// pricesConfig is the price table of estimated costs (see experiments.Prices).
type pricesConfig struct {
	// ComputeHour is the price of an hour of a running endpoint.
	ComputeHour float64 `yaml:"compute_hour,omitempty"`
	// StorageGiBMonth is the price of a GiB of branch delta kept 30 days.
	StorageGiBMonth float64 `yaml:"storage_gib_month,omitempty"`
	// Currency labels the amounts. Default USD.
	Currency string `yaml:"currency,omitempty"`
}

func defaultConfig() config {
	dir := os.Getenv("OFFSHOOT_DATA_DIR")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "."
		}
		dir = filepath.Join(home, ".local", "share", "offshoot")
	}
	return config{
		DataDir:   dir,
		HTTPAddr:  "127.0.0.1:8432",
		ProxyAddr: "127.0.0.1:55432",
		LogLevel:  "info",
		LogFormat: "text",
	}
}

// exitError carries a process exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// app is what every subcommand shares: the resolved configuration and logger.
type app struct {
	cfg        config
	configFile string
	log        *slog.Logger
	stdout     io.Writer
	stderr     io.Writer
}

// newRootCmd builds the command tree; commands write to stdout and stderr.
func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	a := &app{cfg: defaultConfig(), stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "offshoot",
		Short:         "Git-like branches of a real PostgreSQL + pgvector database",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.resolve(cmd)
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&a.cfg.DataDir, "data-dir", a.cfg.DataDir, "data directory (env OFFSHOOT_DATA_DIR)")
	f.StringVar(&a.configFile, "config", os.Getenv("OFFSHOOT_CONFIG"), "optional YAML config file (env OFFSHOOT_CONFIG)")
	f.StringVar(&a.cfg.LogLevel, "log-level", a.cfg.LogLevel, "log level: debug, info, warn, error (env OFFSHOOT_LOG_LEVEL)")
	f.StringVar(&a.cfg.LogFormat, "log-format", a.cfg.LogFormat, "log format: text or json (env OFFSHOOT_LOG_FORMAT)")
	for _, register := range subcommands {
		root.AddCommand(register(a))
	}
	usageIsBadInput(root)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root
}

func init() {
	subcommands = append(subcommands, func(a *app) *cobra.Command {
		return &cobra.Command{
			Use:   "config",
			Short: "Print the resolved configuration (defaults < config file < OFFSHOOT_* env < flags) as YAML",
			Args:  cobra.NoArgs,
			RunE: func(*cobra.Command, []string) error {
				return yaml.NewEncoder(a.stdout).Encode(a.cfg)
			},
		}
	})
}

// usageIsBadInput makes every usage error of cmd and its subcommands (an
// unknown flag, a bad flag value, a wrong number of arguments, a missing
// required flag) exit with exitBadInput, as the README documents.
func usageIsBadInput(cmd *cobra.Command) {
	bad := func(err error) error {
		if err == nil {
			return nil
		}
		return &exitError{code: exitBadInput, err: err}
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return bad(err) })
	args := cmd.Args
	cmd.Args = func(c *cobra.Command, a []string) error {
		if args != nil {
			if err := args(c, a); err != nil {
				return bad(err)
			}
		}
		// Checked here, before cobra does, so that it is bad input too.
		return bad(c.ValidateRequiredFlags())
	}
	for _, sub := range cmd.Commands() {
		usageIsBadInput(sub)
	}
}

// subcommands registers each verb; files in this package append to it from
// init so verbs arrive with their own file.
var subcommands []func(*app) *cobra.Command

// resolve applies the config file and environment under explicitly set flags
// and builds the logger.
func (a *app) resolve(cmd *cobra.Command) error {
	set := map[string]bool{}
	cmd.Flags().Visit(func(fl *pflag.Flag) { set[fl.Name] = true })
	if a.configFile != "" {
		var fileCfg config
		b, err := os.ReadFile(a.configFile)
		if err != nil {
			return fmt.Errorf("read config: %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&fileCfg); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("config %s: %w", a.configFile, err)
		}
		overlay(&a.cfg, fileCfg, set)
	}
	envCfg := config{
		DataDir:     os.Getenv("OFFSHOOT_DATA_DIR"),
		HTTPAddr:    os.Getenv("OFFSHOOT_HTTP_ADDR"),
		ProxyAddr:   os.Getenv("OFFSHOOT_PROXY_ADDR"),
		ProxyPath:   os.Getenv("OFFSHOOT_PROXY_PATH"),
		WALPath:     os.Getenv("OFFSHOOT_WAL_PATH"),
		LogLevel:    os.Getenv("OFFSHOOT_LOG_LEVEL"),
		LogFormat:   os.Getenv("OFFSHOOT_LOG_FORMAT"),
		DatasetsDir: os.Getenv("OFFSHOOT_DATASETS_DIR"),
		AuditSQL:    os.Getenv("OFFSHOOT_AUDIT_SQL"),
	}
	envCfg.ObjectStore.URL = os.Getenv("OFFSHOOT_S3_URL")
	envCfg.ObjectStore.fromEnv()
	overlay(&a.cfg, envCfg, set)
	log, err := newLogger(a.stderr, a.cfg.LogLevel, a.cfg.LogFormat)
	if err != nil {
		return err
	}
	a.log = log
	return nil
}

// overlay copies the non-empty fields of src into dst unless the matching
// flag was set explicitly.
func overlay(dst *config, src config, flagSet map[string]bool) {
	pick := func(d *string, s, flag string) {
		if s != "" && !flagSet[flag] {
			*d = s
		}
	}
	pick(&dst.DataDir, src.DataDir, "data-dir")
	pick(&dst.HTTPAddr, src.HTTPAddr, "http-addr")
	pick(&dst.ProxyAddr, src.ProxyAddr, "proxy-addr")
	pick(&dst.ProxyPath, src.ProxyPath, "proxy-path")
	pick(&dst.WALPath, src.WALPath, "wal-path")
	pick(&dst.LogLevel, src.LogLevel, "log-level")
	pick(&dst.LogFormat, src.LogFormat, "log-format")
	pick(&dst.Prices.Currency, src.Prices.Currency, "price-currency")
	pick(&dst.DatasetsDir, src.DatasetsDir, "datasets-dir")
	pick(&dst.AuditSQL, src.AuditSQL, "audit-sql")
	pick(&dst.ObjectStore.URL, src.ObjectStore.URL, "s3")
	pick(&dst.ObjectStore.Endpoint, src.ObjectStore.Endpoint, "s3-endpoint")
	pick(&dst.ObjectStore.Region, src.ObjectStore.Region, "s3-region")
	if src.ObjectStore.PathStyle && !flagSet["s3-path-style"] {
		dst.ObjectStore.PathStyle = true
	}
	if src.ObjectStore.Interval != 0 && !flagSet["s3-interval"] {
		dst.ObjectStore.Interval = src.ObjectStore.Interval
	}
	if src.ObjectStore.Keep != 0 && !flagSet["s3-keep"] {
		dst.ObjectStore.Keep = src.ObjectStore.Keep
	}
	if len(src.WebhookAllow) > 0 && !flagSet["webhook-allow"] {
		dst.WebhookAllow = src.WebhookAllow
	}
	pickF := func(d *float64, s float64, flag string) {
		if s != 0 && !flagSet[flag] {
			*d = s
		}
	}
	pickF(&dst.Prices.ComputeHour, src.Prices.ComputeHour, "price-compute-hour")
	pickF(&dst.Prices.StorageGiBMonth, src.Prices.StorageGiBMonth, "price-storage-gib-month")
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
}
