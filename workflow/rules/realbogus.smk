# Stage: cutout triplets around candidates, the real/bogus injection training set, and
# scoring of every pair's candidates (and of ZTF alerts) with the trained classifier.


rule cutouts:
    input:
        unpack(pair_science_input),
        candidates=f"{RESULTS}/diffim/{{pair}}/candidates.ecsv",
        difference=f"{RESULTS}/diffim/{{pair}}/difference.fits",
        aligned_reference=f"{RESULTS}/diffim/{{pair}}/aligned_reference.fits",
    output:
        product=f"{RESULTS}/cutouts/{{pair}}/cutouts.h5",
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("skysift.cli.stages:_cutouts"),
        diffim_dir=job_function(lambda wildcards, input: Path(input.candidates).parent),
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


if config["realbogus"]["survey"] == "simulated":

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

else:

    rule realbogus_training_set:
        # The survey's own alert-like triplets (skysift.realbogus.stamps), on simulated
        # backgrounds and, when directories are configured, on real alert stamps.
        output:
            product=f"{RESULTS}/realbogus/training_set.h5",
        params:
            skysift=SKYSIFT_CLI,
            code=code_version("skysift.cli.stages:_realbogus_survey_set"),
            seed=derive_seed(config["seed"], "realbogus_training_set"),
            options=stage_flags(
                "realbogus",
                keys=("survey", "n_survey_samples", "snr_min", "survey_snr_max", "real_fraction",
                      "real_backgrounds", "real_background_fraction"),
            ),
            provenance=provenance_flags("realbogus_training_set", "realbogus"),
        log:
            f"{LOGS}/realbogus_training_set.log",
        conda:
            "../../envs/diffim.yaml"
        resources:
            mem_mb=3000,
            runtime=20,
        shell:
            "{params.skysift} realbogus survey-set --out {output.product} --seed {params.seed} "
            "{params.options} {params.provenance} > {log} 2>&1"


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
        model_dir=job_function(lambda wildcards, input: Path(input.model).parent),
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


if PAIR_BATCHES:

    rule cutouts_batch:
        # Cutouts of one batch of the pairs table (inputs.pairs_per_job > 1), after its differencing.
        input:
            diffim=f"{RESULTS}/batches/diffim/{{batch}}.json",
        output:
            record=f"{RESULTS}/batches/cutouts/{{batch}}.json",
        params:
            skysift=SKYSIFT_CLI,
            code=code_version("skysift.cli.records:_batch", "skysift.cli.stages:_cutouts"),
            checksums=batch_checksums,
            options=stage_flags("realbogus", keys=("cutout_size",)),
            provenance=provenance_flags("cutouts", "realbogus.cutout_size"),
            plan=cutouts_batch_plan,
        log:
            f"{LOGS}/cutouts_batch/{{batch}}.log",
        wildcard_constraints:
            batch=r"b\d{5}",
        conda:
            "../../envs/diffim.yaml"
        resources:
            mem_mb=2000,
            runtime=batch_runtime(1),
        shell:
            "{params.skysift} batch - --out {output.record} <<< {params.plan} > {log} 2>&1"

    rule score_candidates_batch:
        input:
            cutouts=f"{RESULTS}/batches/cutouts/{{batch}}.json",
            model=f"{RESULTS}/models/realbogus/model.pt",
            card=f"{RESULTS}/models/realbogus/model_card.json",
        output:
            record=f"{RESULTS}/batches/score_candidates/{{batch}}.json",
        params:
            skysift=SKYSIFT_CLI,
            code=code_version("skysift.cli.records:_batch", "skysift.cli.training:_score", "skysift.realbogus.task"),
            checksums=batch_checksums,
            provenance=provenance_flags("score_candidates", "train.realbogus"),
            plan=score_candidates_batch_plan,
        log:
            f"{LOGS}/score_candidates_batch/{{batch}}.log",
        wildcard_constraints:
            batch=r"b\d{5}",
        conda:
            "../../envs/train.yaml"
        resources:
            mem_mb=2000,
            runtime=batch_runtime(1),
        shell:
            "{params.skysift} batch - --out {output.record} <<< {params.plan} > {log} 2>&1"

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


rule evaluate_ztf_alerts:
    # Agreement with ZTF's own rb/drb on real alerts; alerts whose stamps were training
    # backgrounds (the product's meta.background_objects) are left out.
    input:
        model=f"{RESULTS}/models/realbogus/model.pt",
        card=f"{RESULTS}/models/realbogus/model_card.json",
        training_set=f"{RESULTS}/realbogus/training_set.h5",
    output:
        table=f"{RESULTS}/realbogus/alerts_evaluation.ecsv",
        summary=f"{RESULTS}/realbogus/alerts_evaluation.json",
        figure=report(
            f"{RESULTS}/realbogus/alerts_evaluation.png",
            caption="../report/realbogus_alerts.rst",
            category="6. Evaluation",
            labels={"task": "realbogus", "figure": "real alerts vs ZTF rb/drb"},
        ),
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("skysift.cli.stages:_realbogus_evaluate", "skysift.realbogus.task"),
        model_dir=lambda wildcards, input: Path(input.model).parent,
        outdir=lambda wildcards, output: Path(output.table).parent,
        alerts=" ".join(f"--alerts {shlex.quote(directory)}" for directory in config["realbogus"]["evaluation_alerts"]),
        provenance=provenance_flags("evaluate_ztf_alerts", "train.realbogus", "realbogus"),
    log:
        f"{LOGS}/evaluate_ztf_alerts.log",
    conda:
        "../../envs/train.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{params.skysift} realbogus evaluate --model {params.model_dir} {params.alerts} "
        "--product {input.training_set} --outdir {params.outdir} {params.provenance} > {log} 2>&1"
