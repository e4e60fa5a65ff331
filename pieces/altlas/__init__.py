"""ALT_LAS service pieces: `altlas.ai_orchestrator` and `altlas.os_integration`.

Both are thin clients of the services' HTTP contract (`docs/altlas-services.md`) built on the shared
`pieces.altlas.client.call_service`.
"""

from pieces.altlas.ai_orchestrator import AiOrchestratorPiece
from pieces.altlas.os_integration import OsIntegrationPiece

__all__ = ["AiOrchestratorPiece", "OsIntegrationPiece"]
