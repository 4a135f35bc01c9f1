"""`make bank` (loadtests/bank.py) says plainly when there is no system to test: exit 2,
the address it tried, before any client is opened."""
from loadtests import bank as bank_run
from harness.servers import free_port


def test_no_system_at_the_address_is_exit_2_naming_it(capsys):
    url = "http://127.0.0.1:{}".format(free_port())
    assert bank_run.main(["--url", url, "--seconds", "1"]) == 2
    assert url in capsys.readouterr().err
