fn main() {
    if let Err(e) = ecgwgpu::cli::run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
