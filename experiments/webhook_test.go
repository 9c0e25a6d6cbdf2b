package experiments

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestWebhookCheck: only http(s) URLs with a host, and no loopback,
// link-local, unspecified or multicast literal unless allow-listed.
func TestWebhookCheck(t *testing.T) {
	none, err := newWebhookPolicy(nil)
	if err != nil {
		t.Fatal(err)
	}
	allow, err := newWebhookPolicy([]string{"127.0.0.0/8", "hooks.internal", "::1", "169.254.10.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		p   webhookPolicy
		url string
		ok  bool
	}{
		{none, "https://hooks.example.com/x", true},
		{none, "http://203.0.113.7:8080/hook", true},
		{none, "http://10.1.2.3/hook", true},
		{none, "file:///etc/passwd", false},
		{none, "gopher://example.com/", false},
		{none, "ftp://example.com/", false},
		{none, "https:///nohost", false},
		{none, "example.com/hook", false},
		{none, "http://127.0.0.1:9/x", false},
		{none, "http://127.9.9.9/x", false},
		{none, "http://[::1]/x", false},
		{none, "http://[::ffff:127.0.0.1]/x", false},
		{none, "http://169.254.169.254/latest/meta-data/", false},
		{none, "http://[fe80::1]/x", false},
		{none, "http://0.0.0.0/x", false},
		{none, "http://[::]/x", false},
		{none, "http://224.0.0.1/x", false},
		{none, "http://localhost:8080/x", false},
		{none, "http://LOCALHOST/x", false},
		{none, "http://api.localhost/x", false},
		{allow, "http://127.0.0.1:9/x", true},
		{allow, "http://[::1]/x", true},
		{allow, "http://hooks.internal/x", true},
		{allow, "http://HOOKS.internal/x", true},
		{allow, "http://169.254.10.5/x", true},
		{allow, "http://169.254.169.254/x", false},
		{allow, "http://[fe80::1]/x", false},
		{allow, "file:///etc/passwd", false},
	} {
		err := tc.p.check(tc.url)
		var fe *FieldError
		switch {
		case tc.ok && err != nil:
			t.Errorf("check(%q) = %v, want ok", tc.url, err)
		case !tc.ok && (!errors.As(err, &fe) || fe.Field != "webhook"):
			t.Errorf("check(%q) = %v, want a webhook FieldError", tc.url, err)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "1.2.3.4/x"} {
		if _, err := newWebhookPolicy([]string{bad}); !errors.Is(err, ErrInvalid) {
			t.Errorf("allow %q: %v, want ErrInvalid", bad, err)
		}
	}
}

// TestWebhookDelivery: the delivering client refuses, at connection time,
// addresses the policy forbids, however the URL was spelled, also after a
// redirect from an allowed host; an allow-listed target receives the POST.
func TestWebhookDelivery(t *testing.T) {
	var hits atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer target.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	_, redirectPort, _ := net.SplitHostPort(redirect.Listener.Addr().String())
	post := func(p webhookPolicy, url string) error {
		resp, err := p.client().Post(url, "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
		}
		return err
	}

	none, _ := newWebhookPolicy(nil)
	// The client alone (no check of the URL first): the dial is refused.
	if err := post(none, target.URL); err == nil || !errors.Is(err, ErrForbidden) {
		t.Errorf("post to %s without allow-list: %v, want a refused dial", target.URL, err)
	}
	// localhost allowed by name, but the redirect goes to 127.0.0.1,
	// which is not allowed.
	byName, _ := newWebhookPolicy([]string{"localhost"})
	if err := post(byName, "http://localhost:"+redirectPort+"/"); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("redirect to a forbidden address: %v, want refused", err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the forbidden target was reached %d times", n)
	}
	loop, _ := newWebhookPolicy([]string{"127.0.0.1"})
	if err := post(loop, target.URL); err != nil {
		t.Errorf("post to an allow-listed address: %v", err)
	}
	if err := post(loop, redirect.URL); err != nil {
		t.Errorf("redirect between allow-listed addresses: %v", err)
	}
	if n := hits.Load(); n != 2 {
		t.Errorf("allowed target reached %d times, want 2", n)
	}
}

// TestScheduleWebhookRefused: the facade refuses a schedule whose webhook
// is not http(s) or targets loopback, on create and on update.
func TestScheduleWebhookRefused(t *testing.T) {
	datasets := t.TempDir()
	svc, err := New(Config{ControlDir: t.TempDir(), DatasetsDir: datasets})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	ctx := WithCaller(context.Background(), LocalCaller)
	sc := Schedule{Name: "n", Cron: "@daily", Metric: "ndcg_cut_10", Spec: ExperimentSpec{Name: "x", Project: "p", Base: BranchPoint{Branch: "main"},
		Dataset:  DatasetSpec{CorpusSQL: "SELECT 1", QueriesSQL: "SELECT 1", QrelsSQL: "SELECT 1"},
		Variants: []VariantSpec{{Name: "a", Embedder: "hash-bow"}}}}
	for _, hook := range []string{"file:///etc/passwd", "http://127.0.0.1:8432/v1/keys", "http://169.254.169.254/"} {
		bad := sc
		bad.Webhook = hook
		var fe *FieldError
		if _, err := svc.CreateSchedule(ctx, bad); !errors.As(err, &fe) || fe.Field != "webhook" {
			t.Errorf("create with webhook %q: %v, want a webhook FieldError", hook, err)
		}
	}
	sc.Webhook = "https://hooks.example.com/offshoot"
	got, err := svc.CreateSchedule(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	got.Webhook = "file:///etc/passwd"
	if _, err := svc.UpdateSchedule(ctx, got.ID, *got); !errors.Is(err, ErrInvalid) {
		t.Errorf("update to a file webhook: %v, want ErrInvalid", err)
	}
	if cur, err := svc.GetSchedule(ctx, got.ID); err != nil || cur.Webhook != sc.Webhook {
		t.Errorf("after refused update: %+v %v", cur, err)
	}
}
