"""The built image as the tests see it: the shipped `.img.xz` (checked against its `.sha256`), unpacked once,
its partitions found from the MBR, files read without mounting (mtools for the FAT boot partition, debugfs for
the ext4 root), so the checks run as any user and look at exactly what would be flashed."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "image" / "out"
SECTOR = 512


class ImageMissing(RuntimeError):
    """No built image in image/out: run `make image` first."""


@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # bytes
    size: int  # bytes
    type: str


@dataclass(frozen=True)
class Image:
    xz: Path
    raw: Path  # unpacked (sparse) copy in a temporary folder
    partitions: tuple[Partition, ...]
    workdir: Path

    @property
    def boot(self) -> Partition:
        return self.partitions[0]

    @property
    def root(self) -> Partition:
        return self.partitions[1]

    @property
    def data(self) -> Partition:
        return self.partitions[2]

    def boot_file(self, name: str) -> bytes:
        """A file of the boot partition (FAT), read with mtools."""
        result = subprocess.run(
            ["mtype", "-i", f"{self.raw}@@{self.boot.start}", f"::{name}"], capture_output=True, check=False
        )
        if result.returncode != 0:
            raise FileNotFoundError(
                f"boot partition: {name}: {result.stderr.decode(errors='replace').strip()}"
            )
        return result.stdout

    def boot_copy(self, name: str, destination: Path) -> Path:
        destination.write_bytes(self.boot_file(name))
        return destination

    def boot_listing(self, folder: str = "") -> list[str]:
        result = subprocess.run(
            ["mdir", "-b", "-i", f"{self.raw}@@{self.boot.start}", f"::{folder}"],
            capture_output=True,
            text=True,
            check=True,
        )
        return sorted(line.rsplit("/", 1)[-1] for line in result.stdout.split() if line)

    def root_fs(self) -> Path:
        """The root partition as its own file (for debugfs), extracted once."""
        target = self.workdir / "root.ext4"
        if not target.exists():
            extract(self.raw, self.root, target)
        return target

    def debugfs(self, request: str) -> str:
        result = subprocess.run(
            ["debugfs", "-R", request, str(self.root_fs())], capture_output=True, text=True, check=False
        )
        return result.stdout

    def root_file(self, path: str) -> str:
        return self.debugfs(f"cat {path}")

    def root_exists(self, path: str) -> bool:
        result = subprocess.run(
            ["debugfs", "-R", f"stat {path}", str(self.root_fs())],
            capture_output=True,
            text=True,
            check=False,
        )
        return "Inode:" in result.stdout

    def root_listing(self, folder: str) -> list[str]:
        names = []
        for line in self.debugfs(f"ls -p {folder}").splitlines():
            fields = line.strip().strip("/").split("/")
            # /inode/mode/uid/gid/name/size/
            if len(fields) >= 5 and fields[4] not in (".", "..", ""):
                names.append(fields[4])
        return sorted(names)

    def root_symlink(self, path: str) -> str:
        """The target of a symlink in the root (debugfs `stat` prints `Fast link dest: "..."`)."""
        for line in self.debugfs(f"stat {path}").splitlines():
            if "link dest:" in line:
                return line.split("link dest:", 1)[1].strip().strip('"')
        raise FileNotFoundError(path)


def built(out: Path = OUT) -> tuple[Path, Path]:
    """(the .img.xz, its .sha256) in image/out; ImageMissing if there is none."""
    found = sorted(out.glob("coffer-*-arm64.img.xz"))
    if not found:
        raise ImageMissing(f"no coffer-*-arm64.img.xz in {out}: run `make image` first")
    xz = found[-1]
    return xz, xz.with_name(xz.name + ".sha256")


def unpack(workdir: Path, out: Path = OUT) -> Image:
    xz, sha = built(out)
    digest = hashlib.sha256()
    with xz.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    expected = sha.read_text(encoding="ascii").split()[0]
    if digest.hexdigest() != expected:
        raise AssertionError(f"{xz.name}: SHA-256 does not match {sha.name}")
    raw = workdir / xz.name.removesuffix(".xz")
    with subprocess.Popen(["xz", "-dc", str(xz)], stdout=subprocess.PIPE) as xzproc:
        subprocess.run(
            ["dd", f"of={raw}", "bs=1M", "conv=sparse", "status=none"], stdin=xzproc.stdout, check=True
        )
    if xzproc.returncode != 0:
        raise AssertionError(f"xz -d {xz} failed")
    return Image(xz=xz, raw=raw, partitions=partitions(raw), workdir=workdir)


def partitions(raw: Path) -> tuple[Partition, ...]:
    table = json.loads(subprocess.run(["sfdisk", "-J", str(raw)], capture_output=True, check=True).stdout)
    found = []
    for number, entry in enumerate(table["partitiontable"]["partitions"], start=1):
        found.append(Partition(number, entry["start"] * SECTOR, entry["size"] * SECTOR, entry["type"]))
    return tuple(found)


def extract(raw: Path, part: Partition, target: Path) -> None:
    with raw.open("rb") as src, target.open("wb") as dst:
        src.seek(part.start)
        left = part.size
        while left:
            chunk = src.read(min(left, 1 << 20))
            if chunk.count(0) == len(chunk):
                dst.seek(len(chunk), 1)  # keep it sparse
            else:
                dst.write(chunk)
            left -= len(chunk)
        dst.truncate(part.size)


def put_back(raw: Path, part: Partition, source: Path) -> None:
    """Write a partition file back into the disk image (after debugfs changed it)."""
    with source.open("rb") as src, raw.open("r+b") as dst:
        offset = part.start
        while chunk := src.read(1 << 20):
            dst.seek(offset)
            if dst.read(len(chunk)) != chunk:  # only the blocks debugfs changed: the copy stays sparse
                dst.seek(offset)
                dst.write(chunk)
            offset += len(chunk)
