"""The report's "From the model" section: the `hotspots` measurement that wrote the run's problems
and every `apply` of the run to the model (store.model_runs). Rendered here on its own, with
autoescaping, and placed into the report as one block; absent for runs that have neither."""

from __future__ import annotations

from typing import Any

import jinja2
from sqlalchemy.engine import Engine

TEMPLATE = """\
<h2 id="model">From the model</h2>
{% for h in hotspots %}
<p>Hotspots of {{ h.model }} ({{ h.target }}, inputs {{ h.inputs }}), measured {{ h.created_at }}
UTC: forward {{ "%.3g"|format(h.forward_ms) }} ms; problems written to {{ h.out_dir }}.</p>
<table><tr><th>problem</th><th>module</th><th>count</th><th>share of the forward</th>
<th>inputs</th><th>constructor</th><th>at</th></tr>
{% for p in h.problems %}<tr><td>{{ p.name }}</td><td>{{ p.type }}</td>
<td class="num">{{ p.count }}</td>
<td class="num">{{ "%.1f"|format(100 * p.share) }}%</td><td>{{ p.inputs }}</td>
<td>{{ p.init }} ({{ p.init_from }})</td><td>{{ p.paths|join(", ") }}</td></tr>
{% endfor %}</table>
{% endfor %}
{% for a in applies %}
<p>Applied to {{ a.model }} ({{ a.target }}), {{ a.created_at }} UTC:
{% if a.status == "applied" %}<strong>end to end {{ x(a.speedup) }}</strong>
(p20-p80 {{ x(a.speedup_p20) }}-{{ x(a.speedup_p80) }}), {{ "%.4g"|format(a.reference_ms) }} ms
to {{ "%.4g"|format(a.patched_ms) }} ms per forward
{%- if a.compiled_reference and a.compiled_reference.speedup %};
{{ x(a.compiled_reference.speedup) }} against torch.compile of the original{% endif %};
patched model {{ a.patched }}.{% else %}nothing applied.{% endif %}</p>
{% if a.replaced %}<table><tr><th>module</th><th>count</th><th>share</th><th>own speedup</th>
<th>candidate</th><th>at</th></tr>
{% for k in a.replaced %}<tr><td>{{ k.type }}</td><td class="num">{{ k.count }}</td>
<td class="num">{{ "%.1f"|format(100 * k.share) }}%</td><td class="num">{{ x(k.speedup) }}</td>
<td><a href="#c-{{ k.candidate }}">{{ k.candidate }}</a></td><td>{{ k.paths|join(", ") }}</td></tr>
{% endfor %}</table>{% endif %}
{% if a.left_out %}<ul class="warnings">{% for k in a.left_out %}
<li>left out {{ k.type }} ({{ k.problem }}, {{ k.candidate }}): {{ k.why }}</li>
{% endfor %}</ul>{% endif %}
{% endfor %}
"""


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}x"


def section(engine: Engine, run_id: str) -> str | None:
    """The section's HTML, or None where the run has no hotspots or apply record."""
    from kernelwright.store import model_runs

    found: dict[str, Any] = model_runs.for_run(engine, run_id)
    if not found["hotspots"] and not found["applies"]:
        return None
    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    return env.from_string(TEMPLATE).render(x=_x, **found)
