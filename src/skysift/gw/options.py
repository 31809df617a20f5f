"""Options of the gravitational-wave stage (config section ``gw``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from skysift.errors import ConfigError
from skysift.options import StageOptions, param

__all__ = ["GWOptions"]


@dataclass(frozen=True)
class GWOptions(StageOptions):
    """Settings of the GW training set, MLGWSC-1 test data and both searches."""

    section: ClassVar[str] = "gw"

    enabled: bool = param(True, "Build, train and evaluate the GW detector.", cli=False)
    n_samples: int = param(2000, "Training samples.", minimum=10)
    signal_fraction: float = param(0.5, "Fraction of training samples with a signal.", exclusive_minimum=0, exclusive_maximum=1)
    approximant: str = param("IMRPhenomD", "Waveform model.", choices=("IMRPhenomD", "IMRPhenomXPHM"))
    sample_rate: float = param(2048.0, "Sample rate.", unit="Hz", exclusive_minimum=0)
    duration: float = param(1.0, "Length of a training sample.", unit="s", exclusive_minimum=0)
    snr_min: float = param(5.0, "Lowest network SNR of training signals.", exclusive_minimum=0)
    snr_max: float = param(20.0, "Highest network SNR of training signals.", exclusive_minimum=0)
    mass_min: float = param(10.0, "Lowest component mass.", unit="solMass", exclusive_minimum=0)
    mass_max: float = param(50.0, "Highest component mass.", unit="solMass", exclusive_minimum=0)
    spin_max: float = param(
        0.8, "Largest spin magnitude of training signals and skysift's test injections: aligned spins uniform in "
        "[-spin_max, spin_max] (IMRPhenomD), isotropic spins of magnitude up to spin_max (IMRPhenomXPHM).", minimum=0, maximum=0.99)
    psd_dir: str = param(
        "", "Folder of PSD files laid out as MLGWSC-1's psds/ (H1/*.hdf, L1/*.hdf): each training sample's noise has one "
        "of them per detector, drawn at random (noise varying as in dataset 3); empty: the aLIGOZeroDetHighPower design PSD.")
    test_duration: float = param(3600.0, "Seconds of MLGWSC-1 foreground and background test data.", unit="s", minimum=60)
    max_distance: float = param(2000.0, "Injections are uniform in volume out to this distance.", unit="Mpc", exclusive_minimum=0)
    search_step: float = param(0.1, "Step of the sliding-window network search.", unit="s", exclusive_minimum=0)
    bank_chirp_masses: int = param(40, "Matched-filter bank grid points in chirp mass.", minimum=2)
    bank_mass_ratios: int = param(12, "Matched-filter bank grid points in mass ratio.", minimum=1)
    search_edge: float = param(
        2.5, "Seconds at either end of a segment that no window of the network search may overlap: at least the 0.5 s "
        "taper plus half the whitening filter (as long as the 4 s Welch segment).", unit="s", minimum=2.5)
    gate_threshold: float = param(50.0, "Autogating threshold in whitened strain; 0 turns gating off.", unit="sigma", minimum=0)
    n_slides: int = param(
        100, "Time slides of L1 against H1 for the background and false-alarm rates of a search of GWOSC or frame "
        "strain; 0 for none (MLGWSC-1 strain files are searched without: their background file is the background).",
        minimum=0)

    def check(self) -> None:
        if self.mass_max <= self.mass_min:
            raise ConfigError(f"gw: mass_max ({self.mass_max}) must exceed mass_min ({self.mass_min})")
        if self.snr_max < self.snr_min:
            raise ConfigError(f"gw: snr_max ({self.snr_max}) is below snr_min ({self.snr_min})")
        if self.search_step > self.duration:
            raise ConfigError(f"gw: search_step ({self.search_step} s) exceeds the window duration ({self.duration} s)")
