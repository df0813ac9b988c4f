# SPDX-License-Identifier: MIT
"""The files pam_apikey reads (conf=) are taken only from root, as sudo takes
sudoers: the file and every directory above it owned by root and writable by
no one else, and no symbolic link on the way.  Anything else makes the module
answer PAM_SERVICE_ERR -- a misconfiguration weakens nothing and is not an
authentication failure -- and log one line naming the file and its fault.

Written from a local user's side: a conf file of their own (or one they can
change) naming a socket they serve and daemon_user=themself would otherwise
make their made-up answer VALID for any login, root's included.  Each test
runs through the real PAM stack (pam_start_confdir) against the default and
the ASan/UBSan build."""

import os
import pwd
import re
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

from conftest import ALICE, BASE62, make_token
from pam_fixtures import (  # noqa: F401 - fixtures
    build, pam, PAM_SERVICE_ERR, PAM_SUCCESS, VALID_REPLY, conf_dir,
    listener, sockdir, syslog)



def made_up_token():
    """A token of the right shape that no daemon ever issued."""
    return make_token("apk", "".join(secrets.choice(BASE62) for _ in range(12)),
                      "".join(secrets.choice(BASE62) for _ in range(43)))


@pytest.fixture
def fake(listener, sockdir):
    """A socket served by root that says VALID to anything: what reaches it
    shows whether the module believed a conf file it should have refused."""
    return listener(sockdir() / "s", reply=VALID_REPLY)


def write_conf(path, text, mode=0o644, owner=None):
    path.write_text(text)
    os.chmod(path, mode)
    if owner is not None:
        pw = pwd.getpwnam(owner)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def service_name():
    """A service name of this test's own: other runs may log at the same time."""
    return "files-" + secrets.token_hex(4)


def refused(pam, syslog, conf, fake, message):
    """Both stacks of a service reading `conf` answer PAM_SERVICE_ERR without
    asking for a key or sending anything, and the log names the fault."""
    auth, acct = service_name(), service_name()
    pam.probe(auth, f"conf={conf}")
    r = pam.run(auth, "root", [made_up_token()])
    assert r.code == PAM_SERVICE_ERR, r
    assert r.prompts == [], "asked for a key with a conf file it should refuse"
    pam.probe(acct, f"conf={conf}", kind="account", before="auth required pam_permit.so\n")
    r = pam.run(acct, "root", [], acct=True)
    assert r.code == PAM_SERVICE_ERR, r
    assert fake.connections() == [], "the module used a conf file it should refuse"
    lines = syslog.wait_for(rf"pam_apikey\({auth}:auth\): " + message + "$")
    assert len(lines) == 1, lines
    syslog.wait_for(rf"pam_apikey\({acct}:account\): " + message + "$")
    ours = syslog.grep(rf"pam_apikey\(({auth}|{acct}):")
    assert not any("authentication failure" in l for l in ours), ours


def test_conf_owned_by_a_user_is_refused(pam, conf_dir, listener, sockdir, syslog, test_users):
    """The attack as it was: alice's own file names her own socket and
    daemon_user=akt-alice, and her listener answers VALID for root."""
    alice = test_users[ALICE]
    hers = listener(sockdir(owner=ALICE) / "s", user=ALICE, reply=VALID_REPLY)
    conf = write_conf(conf_dir / "alice.conf",
                      f"socket={hers.path} daemon_user={ALICE} nodelay\n", owner=ALICE)
    refused(pam, syslog, conf, hers,
            rf"conf file {re.escape(str(conf))} is owned by uid {alice.pw_uid}, not root; "
            r"refusing to use it")


@pytest.mark.parametrize("mode, who", [(0o664, "its group"), (0o646, "others"),
                                       (0o666, "its group and others")])
def test_conf_writable_by_others_is_refused(pam, conf_dir, fake, syslog, mode, who):
    conf = write_conf(conf_dir / "pam_apikey.conf", f"socket={fake.path} nodelay\n", mode)
    refused(pam, syslog, conf, fake,
            rf"conf file {re.escape(str(conf))} is writable by {who} \(mode 0{mode:o}\); "
            r"refusing to use it")


@pytest.mark.parametrize("mode, who", [(0o777, "its group and others"),
                                       (0o775, "its group"), (0o1757, "others")])
def test_conf_in_a_directory_others_can_write_is_refused(pam, conf_dir, fake, syslog, mode, who):
    """The file is root's and 0644, but whoever can write its directory can
    put another file in its place (a sticky directory too: the name is free
    until root takes it)."""
    shared = conf_dir / "shared"
    shared.mkdir()
    os.chmod(shared, mode)
    conf = write_conf(shared / "pam_apikey.conf", f"socket={fake.path} nodelay\n")
    refused(pam, syslog, conf, fake,
            rf"conf file {re.escape(str(conf))}: directory {re.escape(str(shared))} is writable "
            rf"by {who} \(mode {mode:04o}\); refusing to use it")


def test_conf_under_tmp_is_refused(pam, fake, syslog):
    """/tmp is root's, but sticky and writable by everyone: a conf file
    anywhere under it is refused, however safe the directories below."""
    d = tempfile.mkdtemp(prefix="akp-conf-", dir="/tmp")
    try:
        os.chmod(d, 0o755)
        conf = write_conf(Path(d) / "pam_apikey.conf", f"socket={fake.path} nodelay\n")
        st = os.stat("/tmp")
        refused(pam, syslog, conf, fake,
                rf"conf file {re.escape(str(conf))}: directory /tmp is writable by its group and others "
                rf"\(mode {st.st_mode & 0o7777:04o}\); refusing to use it")
    finally:
        shutil.rmtree(d)


def test_conf_in_a_directory_of_a_user_is_refused(pam, conf_dir, fake, syslog, test_users):
    """alice cannot write root's file, but she can rename it away and put
    her own in its place."""
    home = conf_dir / "alice"
    home.mkdir()
    os.chown(home, test_users[ALICE].pw_uid, test_users[ALICE].pw_gid)
    conf = write_conf(home / "pam_apikey.conf", f"socket={fake.path} nodelay\n")
    refused(pam, syslog, conf, fake,
            rf"conf file {re.escape(str(conf))}: directory {re.escape(str(home))} is owned by "
            rf"uid {test_users[ALICE].pw_uid}, not root; refusing to use it")


def test_conf_through_a_symbolic_link_is_refused(pam, conf_dir, fake, syslog):
    real = write_conf(conf_dir / "real.conf", f"socket={fake.path} nodelay\n")
    link = conf_dir / "link.conf"
    link.symlink_to(real)
    refused(pam, syslog, link, fake,
            rf"conf file {re.escape(str(link))} is a symbolic link; refusing to use it "
            r"\(name the file by its real path\)")


def test_conf_below_a_symbolic_link_is_refused(pam, conf_dir, fake, syslog):
    (conf_dir / "real").mkdir()
    write_conf(conf_dir / "real" / "pam_apikey.conf", f"socket={fake.path} nodelay\n")
    (conf_dir / "link").symlink_to(conf_dir / "real")
    conf = conf_dir / "link" / "pam_apikey.conf"
    refused(pam, syslog, conf, fake,
            rf"conf file {re.escape(str(conf))}: {re.escape(str(conf_dir / 'link'))} is a "
            r"symbolic link; refusing to use it \(name the file by its real path\)")


def test_conf_that_is_a_fifo_is_refused_at_once(pam, conf_dir, fake, syslog):
    """A FIFO in its place must not hang the login (nobody writes to it)."""
    fifo = conf_dir / "pam_apikey.conf"
    os.mkfifo(fifo, 0o644)
    refused(pam, syslog, fifo, fake,
            rf"conf file {re.escape(str(fifo))} is not a regular file under 64 KiB; refusing "
            r"to use it")


def test_conf_of_root_is_read(pam, conf_dir, fake, syslog):
    """The good case: root's file, 0644 or 0600, in root's directories."""
    for mode in (0o644, 0o600):
        conf = write_conf(conf_dir / f"pam_apikey.{mode:o}.conf",
                          f"# the daemon's socket\nsocket={fake.path} nodelay\n", mode)
        service = service_name()
        pam.probe(service, f"conf={conf}")
        token = made_up_token()
        r = pam.run(service, "root", [token])
        assert r.code == PAM_SUCCESS, r
        seen = fake.connections()
        assert token in seen[-1], seen
        assert syslog.grep(rf"pam_apikey\({service}:") == []
