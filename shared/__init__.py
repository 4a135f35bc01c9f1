"""The project's common library: only what two or more services really share."""
import warnings

# Eventlet >= 0.40 announces its own deprecation on import. Nameko 2.x runs on
# nothing else, so the project has chosen it knowingly (docs/architecture.md, "Dependencies and pinned versions");
# the notice would otherwise open every log and command output.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
