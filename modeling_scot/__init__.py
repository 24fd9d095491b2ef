"""modeling_scot: zero-shot composed image retrieval with a frozen dual encoder and a trained Combiner."""

from transformers import AutoConfig, AutoModel, AutoProcessor

from .collators import CachedEmbeddingCollator, ScotDataCollator
from .configuration_scot import SCOT_VERSION, ScotConfig
from .embedding_cache import EmbeddingCache, build_embedding_cache
from .encoders import DualEncoderAdapter
from .encoding import encode_images, encode_texts
from .hub_upload import upload_model_folder
from .losses import scot_contrastive_loss
from .model_card import write_model_card
from .modeling_scot import Combiner, ScotModel, ScotOutput, load_dual_encoder
from .processing_scot import ScotProcessor, load_image, set_max_image_pixels
from .trainer import ScotTrainer

__version__ = SCOT_VERSION

AutoConfig.register(ScotConfig.model_type, ScotConfig, exist_ok=True)
AutoModel.register(ScotConfig, ScotModel, exist_ok=True)
AutoProcessor.register(ScotConfig, ScotProcessor, exist_ok=True)
ScotConfig.register_for_auto_class()
ScotModel.register_for_auto_class("AutoModel")
ScotProcessor.register_for_auto_class("AutoProcessor")
ScotModel.processor_class = ScotProcessor
ScotModel.card_writer = staticmethod(write_model_card)
ScotModel.folder_uploader = staticmethod(upload_model_folder)

__all__ = [
    "CachedEmbeddingCollator",
    "Combiner",
    "DualEncoderAdapter",
    "EmbeddingCache",
    "ScotConfig",
    "ScotDataCollator",
    "ScotModel",
    "ScotOutput",
    "ScotProcessor",
    "ScotTrainer",
    "__version__",
    "build_embedding_cache",
    "encode_images",
    "encode_texts",
    "load_dual_encoder",
    "load_image",
    "scot_contrastive_loss",
    "set_max_image_pixels",
]
