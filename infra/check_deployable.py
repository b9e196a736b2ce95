#!/usr/bin/env python3
"""Checks offline that a SAM template can be deployed, for every transport it offers.

cfn-lint and `sam validate` look at the template as written. CloudFormation refuses a stack for
reasons they can miss: a dependency cycle that only appears once SAM has expanded the functions'
events (the classic S3-trigger cycle: the bucket's notification needs the function's permission,
the function its role, and the role's policy the bucket's ARN), a resource that references one its
condition leaves out, or parameters whose values break a Rule. So, for each scenario (every
`Transport` value, with and without the SFTP server) and for each environment in samconfig.toml:

1. the template is transformed with SAM's own translator (`samtranslator`, offline: managed
   policies are resolved from a stub map instead of IAM);
2. the parameters get their values (defaults, the scenario's, the environment's overrides) and
   are checked against their constraints, and every Rule is evaluated with them;
3. the Conditions are evaluated and the resources they leave out are removed, together with the
   branches of `Fn::If` not taken;
4. every reference (`Ref`, `Fn::GetAtt`, `${X}` and `${X.Attr}` in `Fn::Sub`, `DependsOn`) of
   what remains must name a remaining resource, and the references must not form a cycle.

Usage: check_deployable.py [TEMPLATE] [--samconfig FILE]. Exits 1 and lists the problems if any.
Needs `aws-sam-translator` and PyYAML (both come with the SAM CLI).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from samtranslator.metrics.metrics import Metrics  # noqa: E402
from samtranslator.model.exceptions import InvalidDocumentException  # noqa: E402
from samtranslator.parser.parser import Parser  # noqa: E402
from samtranslator.translator.translator import Translator  # noqa: E402
from samtranslator.yaml_helper import yaml_parse  # noqa: E402

PSEUDO = {
    "AWS::AccountId": "123456789012",
    "AWS::Region": "us-east-1",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "wtc-streaming-check",
    "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/wtc-streaming-check/x",
    "AWS::NotificationARNs": [],
    "AWS::NoValue": None,
}

# Values a scenario gives the parameters its transport needs (only those the template declares).
SAMPLE_VALUES = {
    "MSK": {
        "MskClusterArn": "arn:aws:kafka:us-east-1:123456789012:cluster/wtc/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-1",
        "MskBootstrapBrokers": "b-1.wtc.abc123.c2.kafka.us-east-1.amazonaws.com:9098,b-2.wtc.abc123.c2.kafka.us-east-1.amazonaws.com:9098",
        "SubnetIds": "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
        "SecurityGroupIds": "sg-0123456789abcdef0",
    },
    "SelfManagedKafka": {
        "KafkaBootstrapServers": "seed-abc.any.us-east-1.mpx.prd.cloud.redpanda.com:9092",
        "KafkaSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:wtc/redpanda-AbCdEf",
    },
    "Kinesis": {},
}
SFTP_SAMPLE = {"SftpUserPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyForTheOfflineCheckOnly cdr_data"}

# The functions CloudFormation accepts inside Rules (and Ref).
RULE_FUNCTIONS = {
    "Fn::And", "Fn::Or", "Fn::Not", "Fn::Equals", "Fn::Contains", "Fn::EachMemberEquals",
    "Fn::EachMemberIn", "Fn::RefAll", "Fn::ValueOf", "Fn::ValueOfAll", "Ref", "Condition",
}


class ManagedPolicies(dict):
    """Offline stand-in for IAM's list of managed policies: every name is an AWS managed policy."""

    def __missing__(self, name: str) -> str:
        return f"arn:aws:iam::aws:policy/service-role/{name}"


@dataclass
class Problems:
    items: list[str] = field(default_factory=list)

    def add(self, where: str, what: str) -> None:
        self.items.append(f"{where}: {what}")


def load(path: Path) -> dict:
    return yaml_parse(path.read_text())


def with_s3_code(template: dict) -> dict:
    """Local CodeUri paths as `sam validate` sees them: SAM's translator wants S3 locations."""
    for scope in [template.get("Globals", {}).get("Function", {})] + [
        r.get("Properties", {}) for r in template.get("Resources", {}).values()
        if r.get("Type") == "AWS::Serverless::Function"
    ]:
        uri = scope.get("CodeUri")
        if isinstance(uri, str) and not uri.startswith("s3://"):
            scope["CodeUri"] = f"s3://bucket/{uri.strip('./') or 'code'}"
    return template


def translate(template: dict, parameters: dict) -> dict:
    policies, metrics = ManagedPolicies(), Metrics()
    try:
        return Translator(policies, Parser(), metrics=metrics).translate(
            with_s3_code(template), parameters, get_managed_policy_map=lambda: policies
        )
    finally:
        metrics.publish()  # to SAM's dummy publisher: nothing leaves the machine


# --------------------------------------------------------------------------- parameters and rules
def parameter_values(declared: dict, given: dict) -> tuple[dict, list[str]]:
    """Each parameter's value (as CloudFormation hands it to Ref) and the names left without one."""
    values, missing = {}, []
    for name, spec in declared.items():
        raw = given.get(name, spec.get("Default"))
        if raw is None:
            missing.append(name)
            continue
        raw = ",".join(raw) if isinstance(raw, list) else str(raw)
        values[name] = raw.split(",") if spec.get("Type", "String").startswith(("List<", "CommaDelimitedList")) else raw
    return values, missing


def constraint_errors(declared: dict, values: dict) -> list[str]:
    errors = []
    for name, value in values.items():
        spec = declared[name]
        text = ",".join(value) if isinstance(value, list) else value
        if "AllowedValues" in spec and text not in [str(v) for v in spec["AllowedValues"]]:
            errors.append(f"parameter {name}={text!r} is not one of {spec['AllowedValues']}")
        if "AllowedPattern" in spec and not isinstance(value, list) and not re.fullmatch(spec["AllowedPattern"], text):
            errors.append(f"parameter {name}={text!r} does not match its AllowedPattern {spec['AllowedPattern']}")
        if spec.get("Type") == "Number":
            try:
                number = float(text)
            except ValueError:
                errors.append(f"parameter {name}={text!r} is not a number")
                continue
            if "MinValue" in spec and number < float(spec["MinValue"]):
                errors.append(f"parameter {name}={text} is below its MinValue {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                errors.append(f"parameter {name}={text} is above its MaxValue {spec['MaxValue']}")
        if "MinLength" in spec and len(text) < int(spec["MinLength"]):
            errors.append(f"parameter {name} is shorter than its MinLength {spec['MinLength']}")
        if "MaxLength" in spec and len(text) > int(spec["MaxLength"]):
            errors.append(f"parameter {name} is longer than its MaxLength {spec['MaxLength']}")
    return errors


class Evaluator:
    """Evaluates Conditions (and Rules) for one set of parameter values."""

    def __init__(self, template: dict, values: dict, pseudo: dict):
        self.conditions = template.get("Conditions", {})
        self.values = {**pseudo, **values}
        self.cache: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self.cache:
            if name not in self.conditions:
                raise KeyError(f"condition {name} is not defined")
            self.cache[name] = bool(self.eval(self.conditions[name]))
        return self.cache[name]

    def eval(self, node):
        if isinstance(node, list):
            return [self.eval(n) for n in node]
        if not isinstance(node, dict) or len(node) != 1:
            return node
        (fn, arg), = node.items()
        if fn == "Ref":
            if arg not in self.values:
                raise KeyError(f"Ref {arg} is not a parameter")
            return self.values[arg]
        if fn == "Condition":
            return self.condition(arg)
        if fn == "Fn::Equals":
            a, b = self.eval(arg)
            return str(a) == str(b)
        if fn == "Fn::Not":
            return not self.eval(arg[0])
        if fn == "Fn::And":
            return all(self.eval(a) for a in arg)
        if fn == "Fn::Or":
            return any(self.eval(a) for a in arg)
        if fn == "Fn::If":
            return self.eval(arg[1] if self.condition(arg[0]) else arg[2])
        if fn == "Fn::Join":
            sep, items = arg
            return sep.join(str(i) for i in self.eval(items))
        if fn == "Fn::Select":
            return self.eval(arg[1])[int(self.eval(arg[0]))]
        if fn == "Fn::Split":
            return self.eval(arg[1]).split(arg[0])
        if fn == "Fn::Contains":
            items, item = self.eval(arg)
            return item in items
        if fn == "Fn::EachMemberEquals":
            items, item = self.eval(arg)
            return all(i == item for i in items)
        if fn == "Fn::EachMemberIn":
            items, allowed = self.eval(arg)
            return all(i in allowed for i in items)
        if fn == "Fn::Sub" and isinstance(arg, str):
            return re.sub(r"\$\{([^!}][^}]*)\}", lambda m: str(self.values.get(m.group(1), m.group(0))), arg)
        return node


def functions_in(node) -> set[str]:
    if isinstance(node, list):
        return set().union(*(functions_in(n) for n in node)) if node else set()
    if isinstance(node, dict):
        found = {k for k in node if k == "Ref" or k.startswith("Fn::") or k == "Condition"}
        return found.union(*(functions_in(v) for v in node.values()))
    return set()


def rule_errors(template: dict, evaluator: Evaluator) -> list[str]:
    errors = []
    for name, rule in template.get("Rules", {}).items():
        unsupported = functions_in(rule) - RULE_FUNCTIONS
        if unsupported:
            errors.append(f"rule {name} uses {', '.join(sorted(unsupported))}, which CloudFormation does not accept in Rules")
            continue
        if "RuleCondition" in rule and not evaluator.eval(rule["RuleCondition"]):
            continue
        for assertion in rule.get("Assertions", []):
            if not evaluator.eval(assertion["Assert"]):
                errors.append(f"rule {name} fails: {assertion.get('AssertDescription', 'an assertion is false')}")
    return errors


# --------------------------------------------------------------------------- references and cycles
def references(node, evaluator: Evaluator, out: set[str]) -> None:
    """Collects the logical ids `node` references, following only the `Fn::If` branches taken."""
    if isinstance(node, list):
        for n in node:
            references(n, evaluator, out)
        return
    if not isinstance(node, dict):
        return
    if len(node) == 1:
        (fn, arg), = node.items()
        if fn == "Ref" and isinstance(arg, str):
            out.add(arg)
            return
        if fn == "Fn::GetAtt":
            out.add(arg.split(".", 1)[0] if isinstance(arg, str) else arg[0])
            if isinstance(arg, list):
                references(arg[1:], evaluator, out)
            return
        if fn == "Fn::Sub":
            text, local = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1] if len(arg) > 1 else {})
            for name in re.findall(r"\$\{([^!}][^}]*)\}", text):
                name = name.strip().split(".", 1)[0]
                if name not in local:
                    out.add(name)
            references(list(local.values()), evaluator, out)
            return
        if fn == "Fn::If":
            references(arg[1] if evaluator.condition(arg[0]) else arg[2], evaluator, out)
            return
    for value in node.values():
        references(value, evaluator, out)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node, or a node that depends on itself
    (Tarjan's algorithm, iterative so deep templates cannot overflow the stack)."""
    index, low, on_stack, stack, cycles, counter = {}, {}, set(), [], [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph[node]:
                        cycles.append(sorted(component))
    return cycles


def cycle_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete loop through a component, for the message: A -> B -> ... -> A."""
    members, start = set(component), component[0]
    path, seen, node = [start], {start}, start
    while True:
        nxt = sorted(c for c in graph[node] if c in members)
        step = next((c for c in nxt if c == start and len(path) > 1), None) or next(
            (c for c in nxt if c not in seen), None) or (nxt[0] if nxt else start)
        path.append(step)
        if step == start or step in seen:
            return path
        seen.add(step)
        node = step


def check_graph(transformed: dict, values: dict, pseudo: dict) -> list[str]:
    evaluator = Evaluator(transformed, values, pseudo)
    resources = transformed.get("Resources", {})
    kept = {n for n, r in resources.items() if "Condition" not in r or evaluator.condition(r["Condition"])}
    known = set(values) | set(pseudo)
    errors, graph = [], {}

    def target_errors(where: str, targets: set[str]) -> set[str]:
        edges = set()
        for target in targets:
            if target in kept:
                edges.add(target)
            elif target in resources:
                errors.append(f"{where} references {target}, which its condition "
                              f"{resources[target]['Condition']} leaves out")
            elif target not in known:
                errors.append(f"{where} references {target}, which the template does not define")
        return edges

    for name in sorted(kept):
        resource = resources[name]
        targets: set[str] = set()
        references({k: v for k, v in resource.items() if k not in ("DependsOn", "Condition")}, evaluator, targets)
        depends = resource.get("DependsOn", [])
        targets |= {depends} if isinstance(depends, str) else set(depends)
        graph[name] = target_errors(name, targets)
    for name, output in transformed.get("Outputs", {}).items():
        if "Condition" in output and not evaluator.condition(output["Condition"]):
            continue
        targets = set()
        references(output, evaluator, targets)
        target_errors(f"output {name}", targets)
    for component in find_cycles(graph):
        errors.append("dependency cycle: " + " -> ".join(cycle_path(graph, component)))
    return errors


# --------------------------------------------------------------------------- scenarios
def check(template_path: Path, given: dict, pseudo: dict, rules: bool = True) -> list[str]:
    try:
        return check_values(template_path, given, pseudo, rules)
    except (KeyError, ValueError, TypeError, IndexError) as e:
        # An undefined condition or parameter, or an intrinsic function used the wrong way.
        return [f"cannot evaluate the template: {e}"]


def check_values(template_path: Path, given: dict, pseudo: dict, rules: bool) -> list[str]:
    template = load(template_path)
    declared = template.get("Parameters", {})
    values, missing = parameter_values(declared, given)
    errors = [f"parameter {m} has no value (no Default and none given)" for m in missing]
    if missing:
        return errors
    errors += constraint_errors(declared, values)
    if rules:
        errors += rule_errors(template, Evaluator(template, values, pseudo))
    # SAM resolves some properties with the values it is given: hand it what Ref would see.
    sam_values = {k: ",".join(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        transformed = translate(template, sam_values)
    except InvalidDocumentException as e:
        return errors + [f"SAM transform: {c.message}" for c in e.causes]
    return errors + check_graph(transformed, values, pseudo)


def samconfig_environments(path: Path) -> dict[str, dict]:
    """Each environment's deploy parameter overrides and stack name."""
    if not path.exists():
        return {}
    config = tomllib.loads(path.read_text())
    envs = {}
    for env, commands in config.items():
        if not isinstance(commands, dict) or "deploy" not in commands:
            continue
        deploy = commands["deploy"].get("parameters", {})
        overrides = deploy.get("parameter_overrides", "")
        if isinstance(overrides, list):
            overrides = " ".join(overrides)
        pairs = dict(item.split("=", 1) for item in shlex.split(overrides))
        envs[env] = {"overrides": pairs, "stack": deploy.get("stack_name", PSEUDO["AWS::StackName"])}
    return envs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("template", nargs="?", default=str(Path(__file__).with_name("template.yaml")))
    parser.add_argument("--samconfig", help="samconfig.toml whose environments are checked too "
                        "(default: the one beside the template's folder, if any)")
    args = parser.parse_args()
    template_path = Path(args.template)
    samconfig = Path(args.samconfig) if args.samconfig else template_path.resolve().parent.parent / "samconfig.toml"
    declared = load(template_path).get("Parameters", {})

    problems = Problems()
    checked = 0
    transports = [str(t) for t in declared.get("Transport", {}).get("AllowedValues", [])] or [None]
    sftp_values = ["false", "true"] if "CreateSftpServer" in declared else [None]

    for transport in transports:
        for sftp in sftp_values:
            given = {}
            if transport is not None:
                given["Transport"] = transport
                given.update({k: v for k, v in SAMPLE_VALUES.get(transport, {}).items() if k in declared})
            if sftp is not None:
                given["CreateSftpServer"] = sftp
                if sftp == "true":
                    given.update({k: v for k, v in SFTP_SAMPLE.items() if k in declared})
            label = ", ".join(f"{k}={v}" for k, v in (("Transport", transport), ("CreateSftpServer", sftp)) if v)
            for error in check(template_path, given, PSEUDO):
                problems.add(label or "defaults", error)
            checked += 1
            # The Rules must refuse the transport's own parameters left empty.
            if transport and SAMPLE_VALUES.get(transport) and "Rules" in load(template_path):
                bare = {"Transport": transport, **({"CreateSftpServer": sftp} if sftp else {})}
                template = load(template_path)
                values, _ = parameter_values(declared, bare)
                if not rule_errors(template, Evaluator(template, values, PSEUDO)):
                    problems.add(label, "no Rule refuses this transport with its parameters left empty")

    for error in check(template_path, {}, PSEUDO):
        problems.add("template defaults", error)
    checked += 1
    for env, spec in samconfig_environments(samconfig).items():
        pseudo = {**PSEUDO, "AWS::StackName": spec["stack"]}
        for error in check(template_path, spec["overrides"], pseudo):
            problems.add(f"samconfig {env}", error)
        checked += 1

    if problems.items:
        print(f"{template_path}: {len(problems.items)} problem(s) in {checked} checks:")
        for item in problems.items:
            print(f"  {item}")
        return 1
    print(f"{template_path}: deployable in {checked} checks (every Transport"
          f"{' with and without the SFTP server' if sftp_values != [None] else ''}, the defaults"
          f"{', samconfig ' + ', '.join(samconfig_environments(samconfig)) if samconfig.exists() else ''}): "
          "no dependency cycle, no reference to a resource left out, every parameter set and every Rule met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
