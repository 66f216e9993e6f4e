"""Text side of paddle_mm: the Chinese-CLIP WordPiece tokenizer (numpy only, no paddle import)."""

from paddle_mm.text.tokenizer import ChineseClipTextTokenizer, WordPieceTokenizer, tokenize

__all__ = ["ChineseClipTextTokenizer", "WordPieceTokenizer", "tokenize"]
