#!/usr/bin/env bash
# make team-ca: a local certificate authority and, signed by it, the team gateway's certificate
# for mlflow.<name>, jupyter.<name> and <name> (team-gateway/README.md). Runs in a one-shot
# container of the workbench's base image (its openssl), as the caller's uid, with no network;
# writes into /ca (WORKBENCH_TEAM_CA_DIR on the host, team-gateway/local-ca/ by default):
#   ca.pem      the CA's certificate: what clients trust (browsers, requests' verify=,
#               MLFLOW_TRACKING_SERVER_CERT_PATH)
#   ca.key      the CA's private key: stays here, never mounted into the gateway
#   server.crt  the gateway's certificate  (WORKBENCH_TEAM_CERT_FILE)
#   server.key  its private key            (WORKBENCH_TEAM_KEY_FILE)
# The CA is kept across runs (clients trust it once) and is name-constrained to <name> and its
# subdomains: its key, if it leaked, signs nothing a client would accept for another domain.
# Each run issues a new server key and certificate.
set -Eeuo pipefail
name="${WORKBENCH_PUBLIC_NAME:-}"
out=/ca
die() { printf 'make team-ca: %s\n' "$*" >&2; exit 1; }
[[ -n "$name" ]] || die "WORKBENCH_PUBLIC_NAME is empty: set it in .env (e.g. team.example.com)"
# A DNS name: labels of letters, digits and hyphens (it goes into a certificate's SAN).
[[ "$name" =~ ^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$ ]] \
	|| die "WORKBENCH_PUBLIC_NAME='$name' is not a DNS name"
umask 077
cd "$out"
subject="/O=MLOps workbench/CN=workbench team CA for $name"

if [[ -f ca.pem && -f ca.key ]]; then
	have="$(openssl x509 -in ca.pem -noout -subject -nameopt compat)"
	[[ "$have" == "subject=$subject" ]] \
		|| die "$out/ca.pem is the CA of another name ($have); move it away to make a new one for $name"
	echo "==> keeping the CA in ca.pem (for $name)"
else
	echo "==> a new CA for $name: ca.pem (trust it), ca.key (keep it here)"
	openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 1825 \
		-keyout ca.key -out ca.pem -subj "$subject" \
		-addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" \
		-addext "nameConstraints=critical,permitted;DNS:$name" 2>/dev/null
	chmod 0644 ca.pem
fi

echo "==> server.crt and server.key for mlflow.$name, jupyter.$name and $name"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
	-keyout server.key.new -out server.csr -subj "/CN=mlflow.$name" 2>/dev/null
# 397 days: the longest validity browsers accept for a server certificate.
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days 397 \
	-out server.crt.new -extfile <(printf '%s\n' \
		"basicConstraints=critical,CA:FALSE" \
		"keyUsage=critical,digitalSignature" \
		"extendedKeyUsage=serverAuth" \
		"subjectAltName=DNS:mlflow.$name,DNS:jupyter.$name,DNS:$name" \
		"subjectKeyIdentifier=hash" \
		"authorityKeyIdentifier=keyid") 2>/dev/null
rm -f server.csr ca.srl
chmod 0644 server.crt.new
mv server.key.new server.key
mv server.crt.new server.crt
openssl verify -CAfile ca.pem server.crt >/dev/null
echo "==> done: $(openssl x509 -in server.crt -noout -enddate)"
