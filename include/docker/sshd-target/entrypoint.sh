#!/usr/bin/env bash
# Start a demo SSH target: a host key of its own, one user (SSH_USER, default "heartbeat") whose
# authorized key is the public key mounted at AUTHORIZED_KEY_FILE, then sshd in the foreground.
set -euo pipefail

user="${SSH_USER:-heartbeat}"
key_file="${AUTHORIZED_KEY_FILE:-/run/secrets/heartbeat_ssh_public_key}"

if [[ ! -s "${key_file}" ]]; then
    echo "sshd-target: no public key at ${key_file}; mount the heartbeat's .pub file there" \
         "(HEARTBEAT_SSH_PUBLIC_KEY_FILE in .env)" >&2
    exit 1
fi

# Host keys live as long as the container: recreating it changes its key, which the monitor
# reports as host_key_changed (accept with `heartbeat servers accept-key NAME`).
ssh-keygen -A >/dev/null

if ! id "${user}" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash "${user}"
    # "*" rather than the locked "!": sshd refuses public-key logins to locked accounts.
    usermod --password '*' "${user}"
fi
home="$(getent passwd "${user}" | cut -d: -f6)"
install -d -m 0700 -o "${user}" -g "${user}" "${home}/.ssh"
install -m 0600 -o "${user}" -g "${user}" "${key_file}" "${home}/.ssh/authorized_keys"

mkdir -p /run/sshd
echo "sshd-target: $(hostname) accepts ${user} with $(ssh-keygen -lf "${key_file}" | cut -d' ' -f2)"
exec /usr/sbin/sshd -D -e
