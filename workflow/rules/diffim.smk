# Stage: image differencing (ZOGY) and candidate detection, one job per pair.


rule diffim:
    input:
        unpack(pair_inputs),
    output:
        difference=f"{RESULTS}/diffim/{{pair}}/difference.fits",
        scorr=f"{RESULTS}/diffim/{{pair}}/scorr.fits",
        fpsf=f"{RESULTS}/diffim/{{pair}}/fpsf.fits",
        fpsf_err=f"{RESULTS}/diffim/{{pair}}/fpsf_err.fits",
        aligned_reference=f"{RESULTS}/diffim/{{pair}}/aligned_reference.fits",
        candidates=f"{RESULTS}/diffim/{{pair}}/candidates.ecsv",
        preview=report(
            f"{RESULTS}/diffim/{{pair}}/preview.png",
            caption="../report/diffim.rst",
            category="2. Image differencing",
            subcategory="Previews",
            labels={"pair": "{pair}", "figure": "science, reference, difference, Scorr"},
        ),
    params:
        skysift=SKYSIFT_CLI,
        code=code_version("skysift.cli.stages:_diffim"),
        outdir=job_function(lambda wildcards: f"{RESULTS}/diffim/{wildcards.pair}"),
        science=pair_file("science"),
        reference=pair_file("reference"),
        masks=mask_flags,
        checksums=pair_checksums,
        options=stage_flags("diffim"),
        provenance=provenance_flags("diffim", "diffim"),
    log:
        f"{LOGS}/diffim/{{pair}}.log",
    conda:
        "../../envs/diffim.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
        cpus_per_task=2,
    threads: 2
    shell:
        "{params.skysift} diffim --science {params.science} --reference {params.reference} "
        "{params.masks} --outdir {params.outdir} {params.options} {params.provenance} --label pair_id={wildcards.pair} "
        "> {log} 2>&1"


if PAIR_BATCHES:

    rule diffim_batch:
        # The pairs of one batch of the pairs table (inputs.pairs_per_job > 1) in one job and
        # process (`skysift batch`); their products go where the single-pair rule puts them.
        output:
            record=f"{RESULTS}/batches/diffim/{{batch}}.json",
        params:
            skysift=SKYSIFT_CLI,
            code=code_version("skysift.cli.records:_batch", "skysift.cli.stages:_diffim"),
            checksums=batch_checksums,
            options=stage_flags("diffim"),
            provenance=provenance_flags("diffim", "diffim"),
            plan=diffim_batch_plan,
        log:
            f"{LOGS}/diffim_batch/{{batch}}.log",
        wildcard_constraints:
            batch=r"b\d{5}",
        conda:
            "../../envs/diffim.yaml"
        resources:
            mem_mb=4000,
            runtime=batch_runtime(2),
            cpus_per_task=2,
        threads: 2
        shell:
            "{params.skysift} batch - --out {output.record} <<< {params.plan} > {log} 2>&1"
