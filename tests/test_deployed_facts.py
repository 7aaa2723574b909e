"""Reading the stack's last outputs survives the file backend's checkpoint write racing it, and nothing else."""

from types import SimpleNamespace

import pytest

from config.deployed import CHECKPOINT_READ_ATTEMPTS, last_deployed, stack_outputs

RACE = Exception("invoke of pulumi:pulumi:readStackOutputs failed: invocation of pulumi:pulumi:readStackOutputs "
                 "returned an error: failed to load checkpoint: EOF")
OUTPUTS = SimpleNamespace(value={"outputs": {"istioVersion": "1.6.14", "istioRevision": "", "mongodbMembers": 3}})


def failing(times: int, error: Exception):
    calls = []

    def invoke(token, args):
        calls.append(token)
        if len(calls) <= times:
            raise error
        return OUTPUTS
    return invoke, calls


def test_a_checkpoint_read_that_meets_the_engine_saving_is_read_again():
    invoke, calls = failing(2, RACE)
    facts = last_deployed(invoke, pause=0)
    assert (facts.istio_version, facts.mongodb_members, len(calls)) == ("1.6.14", 3, 3)


def test_a_checkpoint_that_stays_unreadable_fails_the_run():
    invoke, calls = failing(CHECKPOINT_READ_ATTEMPTS, RACE)
    with pytest.raises(Exception, match="failed to load checkpoint"):
        last_deployed(invoke, pause=0)
    assert len(calls) == CHECKPOINT_READ_ATTEMPTS


def test_any_other_failure_is_not_retried():
    invoke, calls = failing(1, Exception("invoke of pulumi:pulumi:readStackOutputs failed: permission denied"))
    with pytest.raises(Exception, match="permission denied"):
        last_deployed(invoke, pause=0)
    assert len(calls) == 1


def test_a_stack_never_created_has_no_outputs():
    # The engine's words for a platform stack named in a stack file but never `pulumi stack init`-ed.
    invoke, calls = failing(1, Exception('invoke of pulumi:pulumi:readStackOutputs failed: invocation of '
                                         'pulumi:pulumi:readStackOutputs returned an error: unknown stack "organization/p/ghost"'))
    assert stack_outputs("ghost", invoke, pause=0) == {} and len(calls) == 1
