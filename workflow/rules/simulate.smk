# Stage: simulated inputs with known truth (the embedded demo's sky).


rule simulate_pair:
    output:
        reference=f"{RESULTS}/simulate/{{pair}}/reference.fits",
        science=f"{RESULTS}/simulate/{{pair}}/science.fits",
        truth=f"{RESULTS}/simulate/{{pair}}/truth.h5",
        stars=f"{RESULTS}/simulate/{{pair}}/stars.ecsv",
        preview=report(
            f"{RESULTS}/simulate/{{pair}}/preview.png",
            caption="../report/simulate_pair.rst",
            category="1. Inputs",
            subcategory="Simulated pairs",
            labels={"pair": "{pair}", "figure": "reference and science"},
        ),
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("skysift.cli.stages:_simulate_pair"),
        outdir=lambda wildcards: f"{RESULTS}/simulate/{wildcards.pair}",
        seed=lambda wildcards: pair_seed(wildcards.pair),
        options=lambda wildcards: simulation_flags(wildcards.pair),
        provenance=provenance_flags("simulate_pair", "simulate.pairs"),
    wildcard_constraints:
        pair=r"(sim|rb)\d+",
    log:
        f"{LOGS}/simulate_pair/{{pair}}.log",
    conda:
        "../../envs/simulate.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{params.skysift} simulate pair --outdir {params.outdir} --label pair_id={wildcards.pair} "
        "--seed {params.seed} {params.options} {params.provenance} > {log} 2>&1"
