# Stage: cutout triplets around candidates, the real/bogus injection training set, and
# scoring of every pair's candidates (and of ZTF alerts) with the trained classifier.


rule cutouts:
    input:
        science=lambda wildcards: pair_inputs(wildcards)["science"],
        candidates=f"{RESULTS}/diffim/{{pair}}/candidates.ecsv",
        difference=f"{RESULTS}/diffim/{{pair}}/difference.fits",
        aligned_reference=f"{RESULTS}/diffim/{{pair}}/aligned_reference.fits",
    output:
        product=f"{RESULTS}/cutouts/{{pair}}/cutouts.h5",
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("cutouts"),
        diffim_dir=lambda wildcards, input: Path(input.candidates).parent,
        size=config["realbogus"]["cutout_size"],
        provenance=provenance_flags("cutouts", "realbogus.cutout_size"),
    log:
        f"{LOGS}/cutouts/{{pair}}.log",
    conda:
        "../../envs/diffim.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{params.skysift} cutouts --diffim-dir {params.diffim_dir} --science {input.science} "
        "--out {output.product} --size {params.size} {params.provenance} > {log} 2>&1"


if config["realbogus"]["survey"] == "simulated":

    rule realbogus_training_set:
        input:
            science=expand(f"{RESULTS}/simulate/{{pair}}/science.fits", pair=realbogus_training_pair_ids()),
            reference=expand(f"{RESULTS}/simulate/{{pair}}/reference.fits", pair=realbogus_training_pair_ids()),
        output:
            product=f"{RESULTS}/realbogus/training_set.h5",
        params:
            skysift=SKYSIFT_CLI,
            code=code_version("realbogus", "diffim", "cutouts"),
            pairs=lambda wildcards, input: " ".join(
                f"--pair {science} {reference}" for science, reference in zip(input.science, input.reference)
            ),
            seed=derive_seed(config["seed"], "realbogus_training_set"),
            options=cli_flags(
                {
                    "n_injections": config["realbogus"]["n_injections_per_image"],
                    "n_repeats": config["realbogus"]["n_repeats"],
                    "snr_min": config["realbogus"]["snr_min"],
                    "snr_max": config["realbogus"]["snr_max"],
                    "n_cosmic_rays": config["realbogus"]["n_cosmic_rays"],
                    "cutout_size": config["realbogus"]["cutout_size"],
                    "detected_only": config["realbogus"]["detected_only"],
                }
            ),
            diffim=cli_flags(config["diffim"]),
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
            code=code_version("realbogus"),
            seed=derive_seed(config["seed"], "realbogus_training_set"),
            options=cli_flags(
                {
                    "survey": config["realbogus"]["survey"],
                    "n_samples": config["realbogus"]["n_survey_samples"],
                    "snr_min": config["realbogus"]["snr_min"],
                    "snr_max": config["realbogus"]["survey_snr_max"],
                    "real_background_fraction": config["realbogus"]["real_background_fraction"],
                }
            ),
            backgrounds=(
                "--real-backgrounds " + " ".join(config["realbogus"]["real_backgrounds"])
                if config["realbogus"]["real_backgrounds"]
                else ""
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
            "{params.options} {params.backgrounds} {params.provenance} > {log} 2>&1"


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
        code=code_version("train", "realbogus"),
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
        "--catalogue {output.catalogue} {params.provenance} > {log} 2>&1"


rule score_ztf_alerts:
    input:
        model=f"{RESULTS}/models/realbogus/model.pt",
        card=f"{RESULTS}/models/realbogus/model_card.json",
    output:
        table=f"{RESULTS}/realbogus/ztf_scores.ecsv",
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("train", "realbogus"),
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
        code=code_version("train", "realbogus"),
        model_dir=lambda wildcards, input: Path(input.model).parent,
        alerts=" ".join(config["realbogus"]["evaluation_alerts"]),
        provenance=provenance_flags("evaluate_ztf_alerts", "train.realbogus", "realbogus"),
    log:
        f"{LOGS}/evaluate_ztf_alerts.log",
    conda:
        "../../envs/train.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{params.skysift} realbogus evaluate --model {params.model_dir} --alerts {params.alerts} "
        "--training-set {input.training_set} --out {output.table} --summary {output.summary} "
        "--figure {output.figure} {params.provenance} > {log} 2>&1"
