"""The Streamlit app: ``streamlit run app/main.py`` opens LXMERT's answers, attention and attributions on an image.

It draws what ``analysis`` computes and imports nothing from ``training``.
"""
