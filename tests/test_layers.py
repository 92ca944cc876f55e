"""The package's layers: readers of records load without torch, no import cycle, no private imports."""
import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gpvae"
BLOCK_TORCH = """
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'torch', 'gpytorch', 'torchvision', 'linear_operator'}:
            raise ImportError(f'{name} is blocked for this test')
sys.meta_path.insert(0, Blocked())
"""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> list[tuple[str, str]]:
    """(imported module, imported name or '') of every import at a module's top level (not in a function:
    that is when importing the module runs it), resolved to absolute names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[:len(base) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found += [(module, alias.name) for alias in node.names]
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        targets = set()
        for module, imported in top_level_imports(path):
            if f"{module}.{imported}" in modules:  # from . import submodule
                targets.add(f"{module}.{imported}")
            elif module in modules:
                targets.add(module)
        edges[name] = targets - {name}
    return edges


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_readers_of_records_and_the_workflow_s_steps_import_without_torch():
    pages = sorted(f"gpvae.pages.{p.stem}" for p in (PACKAGE / "pages").glob("*.py") if p.stem != "__init__")
    readers = ["gpvae.report", "gpvae.verdicts", "gpvae.validity", "gpvae.runs.records", "gpvae.runs.steps", "gpvae.layout",
               "gpvae.io", *pages]
    code = BLOCK_TORCH + f"import {', '.join(readers)}\nprint('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
    # the test can fail: the numerical stack is blocked
    done = subprocess.run([sys.executable, "-c", BLOCK_TORCH + "import gpvae.training"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0 and "blocked for this test" in done.stderr


def test_no_module_imports_another_in_a_cycle():
    assert cycle(graph()) is None, f"import cycle: {' -> '.join(cycle(graph()))}"


def test_no_package_imports_another_in_a_cycle():
    """Subpackages (gpvae.models, gpvae.gp, gpvae.runs) and top-level modules, collapsed."""
    def unit(name):
        parts = name.split(".")
        return ".".join(parts[:2])

    collapsed = {}
    for source, targets in graph().items():
        collapsed.setdefault(unit(source), set()).update(unit(t) for t in targets if unit(t) != unit(source))
    assert cycle(collapsed) is None, f"import cycle between packages: {' -> '.join(cycle(collapsed))}"


def test_the_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_a_private_name_of_another():
    private = [f"{module_name(path)}: from {module} import {name}" for path in PACKAGE.rglob("*.py")
               for module, name in top_level_imports(path) if name.startswith("_") and module.startswith("gpvae")]
    assert not private, private


def test_the_snakefile_imports_no_private_name():
    tree = ast.parse((PACKAGE.parent / "workflow" / "Snakefile").read_text().split("\nrule ")[0].split("\nonstart:")[0])
    names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names]
    assert names and not [n for n in names if n.startswith("_")], names


def test_every_option_belongs_to_one_group_declared_beside_its_model():
    """TrainConfig is the trainer's options and the models' groups, nothing more: each field in exactly one
    group; each model reads its own group (its constructor takes the group's fields as keywords); ``train
    --help`` lists the options group by group."""
    import dataclasses
    import inspect

    from gpvae.cli import build_parser
    from gpvae.config import OPTION_GROUPS, TrainConfig, TrainerOptions
    from gpvae.models import MODELS
    from gpvae.options import OptionGroup

    owners = {}
    for group in OPTION_GROUPS:
        for f in dataclasses.fields(group):
            owners.setdefault(f.name, []).append(group.__name__)
    assert {n: g for n, g in owners.items() if len(g) > 1} == {}
    assert set(owners) == {f.name for f in dataclasses.fields(TrainConfig)}
    for name, model in MODELS.items():
        if model.Options is OptionGroup:  # a model without switches (the VAE)
            continue
        assert model.Options in OPTION_GROUPS and model.Options is not TrainerOptions, name
        assert model.Options.__module__.split(".")[1] in ("models", "gp"), (name, model.Options.__module__)
        if model.Options.__name__ != "GPRFOptions":  # GP-RF's constructor takes n_train and its options
            parameters = inspect.signature(model.__init__).parameters
            assert {f.name for f in dataclasses.fields(model.Options)} <= set(parameters), name
    assert MODELS["savae"].Options.values(TrainConfig(model="savae", svi_steps=7))["svi_steps"] == 7
    assert TrainConfig.title == "" and [g.title for g in OPTION_GROUPS].count("") == 0
    train = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "train")[1]
    titles = [g.title for g in train._action_groups]
    assert [f"{g.title} options" for g in OPTION_GROUPS] == [t for t in titles if t.endswith(" options")]


def test_a_model_checks_only_its_own_options():
    """A switch of another model never refuses a run (it is unused); the model's own contradictions do."""
    import pytest

    from gpvae.config import TrainConfig
    from gpvae.options import ConfigError

    TrainConfig(model="vae", variational="natural")  # GP-RF's switch, unused by a VAE
    with pytest.raises(ConfigError, match="variational = 'natural' concerns gp_fit = 'elbo'"):
        TrainConfig(model="gp", variational="natural")
    with pytest.raises(ConfigError, match="svi_max_grad_norm"):
        TrainConfig(model="savae", svi_max_grad_norm=0.0)
    with pytest.raises(ConfigError, match="freeze"):
        TrainConfig(model="vae", freeze="encoder")



def test_a_model_built_directly_checks_its_options_as_a_run_does():
    """GP-RF built with a preset is the reading the preset names; SA-VAE refuses what TrainConfig refuses."""
    import pytest

    from gpvae.models import GPRF, SAVAE
    from gpvae.networks import build_networks
    from gpvae.options import ConfigError

    encoder, decoder = build_networks("mlp", (1, 28, 28), "bernoulli", 4)
    paper = GPRF(encoder, decoder, 100, gp_preset="paper")
    assert type(paper).__name__ == "VariationalGPRF" and paper.options.gp_fit == "elbo"
    with pytest.raises(ConfigError, match="svi_max_grad_norm"):
        SAVAE(encoder, decoder, svi_max_grad_norm=0.0)


def test_every_module_stays_under_about_500_lines():
    """A module of the package above ~500 lines holds several concepts: split it where they part."""
    sizes = {module_name(p): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 510} == {}
