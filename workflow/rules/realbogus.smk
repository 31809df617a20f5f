# Stage: cutout triplets around candidates, the real/bogus injection training set, and
# scoring of every pair's candidates (and of ZTF alerts) with the trained classifier.


rule cutouts:
    input:
        unpack(lambda wildcards: {k: v for k, v in pair_inputs(wildcards).items() if k == "science"}),
        candidates=f"{RESULTS}/diffim/{{pair}}/candidates.ecsv",
        difference=f"{RESULTS}/diffim/{{pair}}/difference.fits",
        aligned_reference=f"{RESULTS}/diffim/{{pair}}/aligned_reference.fits",
    output:
        product=f"{RESULTS}/cutouts/{{pair}}/cutouts.h5",
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("skysift.cli.stages:_cutouts"),
        diffim_dir=lambda wildcards, input: Path(input.candidates).parent,
        science=pair_file("science"),
        checksums=pair_checksums,
        options=stage_flags("realbogus", keys=("cutout_size",)),
        provenance=provenance_flags("cutouts", "realbogus.cutout_size"),
    log:
        f"{LOGS}/cutouts/{{pair}}.log",
    conda:
        "../../envs/diffim.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{params.skysift} cutouts --diffim-dir {params.diffim_dir} --science {params.science} "
        "--out {output.product} {params.options} {params.provenance} --label pair_id={wildcards.pair} > {log} 2>&1"


rule realbogus_training_set:
    input:
        science=expand(f"{RESULTS}/simulate/{{pair}}/science.fits", pair=realbogus_training_pair_ids()),
        reference=expand(f"{RESULTS}/simulate/{{pair}}/reference.fits", pair=realbogus_training_pair_ids()),
    output:
        product=f"{RESULTS}/realbogus/training_set.h5",
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("skysift.cli.stages:_realbogus_simulate"),
        pairs=lambda wildcards, input: " ".join(
            f"--pair {science} {reference}" for science, reference in zip(input.science, input.reference)
        ),
        seed=derive_seed(config["seed"], "realbogus_training_set"),
        options=stage_flags("realbogus"),
        diffim=stage_flags("diffim"),
        dask=dask_flags(),
        provenance=provenance_flags("realbogus_training_set", "realbogus", "diffim"),
    log:
        f"{LOGS}/realbogus_training_set.log",
    conda:
        "../../envs/diffim.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        cpus_per_task=2,
    shell:
        "{params.skysift} realbogus simulate {params.pairs} --out {output.product} --seed {params.seed} "
        "{params.options} {params.diffim} {params.dask} {params.provenance} > {log} 2>&1"


rule score_candidates:
    input:
        product=f"{RESULTS}/cutouts/{{pair}}/cutouts.h5",
        model=f"{RESULTS}/models/realbogus/model.pt",
        card=f"{RESULTS}/models/realbogus/model_card.json",
    output:
        scores=f"{RESULTS}/realbogus/candidates/{{pair}}.h5",
        catalogue=f"{RESULTS}/realbogus/candidates/{{pair}}.ecsv",
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("skysift.cli.training:_score", "skysift.realbogus.task"),
        model_dir=lambda wildcards, input: Path(input.model).parent,
        provenance=provenance_flags("score_candidates", "train.realbogus"),
    log:
        f"{LOGS}/score_candidates/{{pair}}.log",
    conda:
        "../../envs/train.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{params.skysift} score --model {params.model_dir} --product {input.product} --out {output.scores} "
        "--catalogue {output.catalogue} {params.provenance} --label pair_id={wildcards.pair} > {log} 2>&1"


rule score_ztf_alerts:
    input:
        model=f"{RESULTS}/models/realbogus/model.pt",
        card=f"{RESULTS}/models/realbogus/model_card.json",
    output:
        table=f"{RESULTS}/realbogus/ztf_scores.ecsv",
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("skysift.cli.stages:_realbogus_score", "skysift.realbogus.task"),
        model_dir=lambda wildcards, input: Path(input.model).parent,
        alerts=config["realbogus"]["ztf_alerts"] or "",
        provenance=provenance_flags("score_ztf_alerts", "train.realbogus"),
    log:
        f"{LOGS}/score_ztf_alerts.log",
    conda:
        "../../envs/train.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{params.skysift} realbogus score --model {params.model_dir} --alerts {params.alerts} "
        "--out {output.table} {params.provenance} > {log} 2>&1"
