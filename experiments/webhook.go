package experiments

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// webhookPolicy decides where schedule webhooks may go: http(s) URLs only,
// and never to a loopback, link-local (cloud metadata at 169.254.169.254),
// unspecified or multicast address unless the operator's allow-list
// (Config.WebhookAllow) names the host or a prefix holding the address.
type webhookPolicy struct {
	prefixes []netip.Prefix
	hosts    map[string]bool // lower case
}

func newWebhookPolicy(allow []string) (webhookPolicy, error) {
	p := webhookPolicy{hosts: map[string]bool{}}
	for _, a := range allow {
		a = strings.TrimSpace(a)
		switch {
		case a == "":
		case strings.Contains(a, "/"):
			pf, err := netip.ParsePrefix(a)
			if err != nil {
				return p, invalid("webhook_allow", "%q: want a CIDR prefix or a host name: %v", a, err)
			}
			p.prefixes = append(p.prefixes, pf.Masked())
		default:
			if ip, err := netip.ParseAddr(a); err == nil {
				p.prefixes = append(p.prefixes, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
				continue
			}
			p.hosts[strings.ToLower(a)] = true
		}
	}
	return p, nil
}

// blockedAddr reports why ip may not be a webhook target ("" when it may).
func blockedAddr(ip netip.Addr) string {
	ip = ip.Unmap()
	switch {
	case ip.IsLoopback():
		return "loopback"
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return "link-local"
	case ip.IsUnspecified():
		return "unspecified"
	case ip.IsMulticast(), ip.IsInterfaceLocalMulticast():
		return "multicast"
	}
	return ""
}

// allowsAddr reports whether a webhook may reach ip, and why not.
func (p webhookPolicy) allowsAddr(ip netip.Addr) (bool, string) {
	ip = ip.Unmap()
	why := blockedAddr(ip)
	if why == "" {
		return true, ""
	}
	for _, pf := range p.prefixes {
		if pf.Contains(ip) {
			return true, ""
		}
	}
	return false, why
}

// check validates a webhook URL: http or https with a host, and, for an
// IP literal or localhost, an address the policy allows. Host names are
// checked again, resolved, on every connection (dialControl).
func (p webhookPolicy) check(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return invalid("webhook", "not a URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return invalid("webhook", "scheme %q: want http or https", u.Scheme)
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return invalid("webhook", "has no host")
	}
	if p.hosts[host] {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ok, why := p.allowsAddr(ip); !ok {
			return invalid("webhook", "%s is a %s address; the operator can allow it with --webhook-allow", host, why)
		}
		return nil
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return invalid("webhook", "%s is a loopback host; the operator can allow it with --webhook-allow", host)
	}
	return nil
}

// dialControl refuses connections to addresses the policy does not allow;
// it runs on every dial, after name resolution, so neither DNS answers
// nor redirects can reach them.
func (p webhookPolicy) dialControl(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("webhook dial %s: %w", address, err)
	}
	if ok, why := p.allowsAddr(ap.Addr()); !ok {
		return fmt.Errorf("webhook dial %s: %s address not allowed (--webhook-allow): %w", address, why, ErrForbidden)
	}
	return nil
}

// client returns the HTTP client that delivers webhooks: no proxy from the
// environment, every dial checked unless the URL's host is allow-listed
// by name.
func (p webhookPolicy) client() *http.Client {
	guarded := &net.Dialer{Timeout: 10 * time.Second, Control: p.dialControl}
	plain := &net.Dialer{Timeout: 10 * time.Second}
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err == nil && p.hosts[strings.ToLower(host)] {
				return plain.DialContext(ctx, network, addr)
			}
			return guarded.DialContext(ctx, network, addr)
		},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		MaxIdleConns:          4,
		IdleConnTimeout:       30 * time.Second,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return fmt.Errorf("webhook: too many redirects")
			}
			return p.check(req.URL.String())
		}}
}
