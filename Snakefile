# skysift: survey data to deep-learning science, reproducibly.
#
#   make demo                      # the embedded demo, end to end, with report
#   snakemake -n                   # what would run (default profile: profiles/default)
#   snakemake --report results/report.html
#
# The configuration is validated against workflow/schemas/config.schema.yaml
# before any job is scheduled (see workflow/rules/common.smk).

from snakemake.utils import min_version

min_version("9")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/diffim.smk"
include: "workflow/rules/realbogus.smk"
include: "workflow/rules/transit.smk"
include: "workflow/rules/lens.smk"
include: "workflow/rules/gw.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/provenance.smk"


onstart:
    withdraw_on_start()


rule all:
    input:
        all_targets(),
    default_target: True
