//! `ecgwgpu distil`: one network that learns a fold ensemble's out-of-fold probabilities
//! ([`crate::train::distil`]), for one network's speed.

use std::path::PathBuf;

use crate::error::Result;
use crate::train::distil::TeacherTargets;

#[derive(clap::Args)]
pub struct DistilArgs {
    /// The `train --folds` ensemble to learn from (`ecgwgpu ensemble` output included), with
    /// its run beside it. The student takes its network, recipe, folds, seed and lead.
    #[arg(long, value_name = "CHECKPOINT")]
    teacher: PathBuf,
    /// Directory of the records (default: the teacher's run's).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Passes over the training beats of each fold student (default: the teacher's). The one
    /// student trains for the median of the folds' best epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Seed for initialisation, folds, shuffling and dropout (default: the teacher's; the same
    /// seed gives the teacher's first run's folds).
    #[arg(long)]
    seed: Option<u64>,
    /// The fold students' targets: `out-of-fold` (each beat the mean of the members that did
    /// not train on its record; they trained on the fold's validation records, which may
    /// flatter the out-of-fold figures) or `same-fold` (the members that held out exactly the
    /// fold's records, on the beats they trained on: needs the teacher's seed). The one student
    /// learns the out-of-fold probabilities either way. `clean`: each beat the mean of the
    /// members that trained on neither its record nor the fold's (nested cross-validation:
    /// give --clean-teacher ensembles trained without each fold's records).
    #[arg(long, value_enum, default_value = "out-of-fold")]
    fold_targets: FoldTargets,
    /// A `train --folds` ensemble trained without some fold's records, whose members teach
    /// that fold with `--fold-targets clean`. Repeatable.
    #[arg(long, value_name = "CHECKPOINT")]
    clean_teacher: Vec<PathBuf>,
    /// Continue an interrupted run in --out (each fold and the student from its last epoch).
    #[arg(long)]
    resume: bool,
    /// Run directory: fold1 … foldK (the fold students), best.safetensors (their ensemble),
    /// student/ (the one network: best.safetensors with the rule chosen out of fold,
    /// metrics.json).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    gpu: super::GpuArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FoldTargets {
    OutOfFold,
    SameFold,
    Clean,
}

pub fn run(args: DistilArgs) -> Result<()> {
    let ctx = args.gpu.context()?;
    let (mut settings, data) =
        crate::train::distil::student_of(&ctx, &args.teacher, args.data_dir.clone())?;
    settings.epochs = args.epochs.unwrap_or(settings.epochs);
    settings.seed = args.seed.unwrap_or(settings.seed);
    settings.resume = args.resume;
    settings.teacher_targets = match args.fold_targets {
        FoldTargets::OutOfFold => TeacherTargets::OutOfFold,
        FoldTargets::SameFold => TeacherTargets::SameFold,
        FoldTargets::Clean => TeacherTargets::Clean,
    };
    settings.clean_teachers = args.clean_teacher.clone();
    settings.out = Some(args.out.clone());
    settings.device = args.gpu.device.clone();
    settings.kernels = args.gpu.kernels;
    let outcome = crate::train::train_folds(
        &ctx,
        &settings,
        &data,
        &args.out,
        &mut super::train::Console::default(),
    )?;
    let oof = outcome.oof_calibrated.as_ref().unwrap_or(&outcome.oof);
    println!(
        "\nout of fold on DS1, the fold students with the rule chosen on them: accuracy {:.4}, \
         macro-F1 {:.3}, {}, {}",
        oof.accuracy,
        oof.macro_f1,
        oof.se_ppv("S"),
        oof.se_ppv("V")
    );
    if settings.teacher_targets == TeacherTargets::OutOfFold {
        println!(
            "note: these out-of-fold figures flatter the students: their targets came from \
             members that trained on each fold's records (--fold-targets clean measures \
             without; DS2 below is unaffected)"
        );
    }
    println!(
        "\ntest, the ensemble of {} fold students\n{}",
        outcome.folds.len(),
        outcome.test.report.table()
    );
    if let Some(student) = &outcome.student {
        println!(
            "\ntest, the one student, loss {:.4}\n{}",
            student.test_loss,
            student.report.table()
        );
    }
    println!(
        "wrote {}",
        args.out.join("student").join("best.safetensors").display()
    );
    Ok(())
}
