# Copyright (c) mmelastic contributors. All rights reserved.
"""The scale-policy HTML demo (ELASTIC Appendix C) in a real headless
Chromium, loaded from disk with no server and no network."""
import base64
import io
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmelastic.analysis import ScalePolicyResults
from mmelastic.analysis.scale_policy_report import write_scale_policy_html

sys.path.insert(0, str(Path(__file__).parent / 'browser'))
from headless_chromium import ensure_browser, start_driver  # noqa: E402

CLASSES = ['apple', 'banana', 'cherry', 'date', 'elderberry', 'fig']
NUM_BLOCKS = 6


def thumbnail(rgb):
    buffer = io.BytesIO()
    Image.new('RGB', (24, 24), tuple(int(c) for c in rgb)).save(
        buffer, format='JPEG')
    return 'data:image/jpeg;base64,' + base64.b64encode(
        buffer.getvalue()).decode()


def make_results(num_images, seed=0, thumbnails=True):
    """Multi-label results with a baseline; some images have two categories
    and some none."""
    rng = np.random.default_rng(seed)
    results = ScalePolicyResults(
        [f'backbone.layer{i // 3 + 1}.{i % 3}' for i in range(NUM_BLOCKS)],
        CLASSES,
        True,
        has_baseline=True,
        model_name='ImageClassifier')
    records, thumbs = [], []
    for i in range(num_images):
        gt = sorted(
            int(c) for c in rng.choice(
                len(CLASSES), int(rng.integers(0, 3)), replace=False))
        pred = gt if rng.random() < 0.6 else [int(rng.integers(6))]
        base = gt if rng.random() < 0.4 else []
        records.append(
            dict(
                index=i,
                img_path=f'val/img_{i:05d}.png',
                gt=gt,
                pred=pred,
                categories=[CLASSES[c] for c in gt],
                prediction=[CLASSES[c] for c in pred],
                correct=set(pred) == set(gt),
                f1=0.0,
                baseline_pred=base,
                baseline_prediction=[CLASSES[c] for c in base],
                baseline_correct=set(base) == set(gt),
                baseline_f1=0.0))
        thumbs.append(
            thumbnail(rng.integers(0, 255, 3)) if thumbnails else None)
    scores = torch.tensor(rng.normal(0, 0.05, (num_images, NUM_BLOCKS)))
    results.add_batch(records, scores, scores, scores, thumbs)
    return results


def category_text(record):
    return ', '.join(record['categories']) or '(none)'


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    chromium, driver = ensure_browser()
    web = start_driver(
        tmp_path_factory.mktemp('chromium-profile'), chromium, driver)
    yield web
    web.quit()


def open_page(web, path):
    from selenium.webdriver.support.ui import WebDriverWait
    web.get(Path(path).resolve().as_uri())
    WebDriverWait(web, 20).until(lambda d: d.find_element('tag name', 'body').
                                 get_attribute('data-ready') == 'true')


def visible_values(web, layer):
    cells = web.find_elements('css selector',
                              f'#rows td.score[data-layer="{layer}"]')
    return [float(c.get_attribute('data-value')) for c in cells]


def text_of(web, element_id):
    return web.find_element('id', element_id).text


def click_header(web, key):
    web.find_element('css selector', f'th[data-sort="{key}"]').click()


def test_page_is_self_contained(tmp_path):
    results = make_results(20)
    page = Path(write_scale_policy_html(results, str(tmp_path / 'a.html')))
    text = page.read_text()
    assert not re.search(r'https?://', text), 'the page refers to the web'
    assert '<link' not in text and ' src=' not in text  # nothing to load
    assert text.count('data:image/jpeg;base64,') == 20
    # Beyond the inline limit the thumbnails are files beside the page.
    page = Path(
        write_scale_policy_html(
            results, str(tmp_path / 'b.html'), inline_thumbnail_limit=10))
    assert 'data:image/jpeg' not in page.read_text()
    assert len(list((tmp_path / 'thumbnails').glob('*.jpg'))) == 20


def test_sort_filter_and_pages_in_chromium(browser, tmp_path):
    web = browser
    results = make_results(130)
    records = results.records
    scores = results.scores
    path = write_scale_policy_html(
        results, str(tmp_path / 'index.html'), page_size=50)
    open_page(web, path)

    # Everything it loaded came from the file itself.
    resources = web.execute_script(
        "return performance.getEntriesByType('resource')"
        '.map(function (e) { return e.name; });')
    assert all(r.startswith(('data:', 'file:')) for r in resources), \
        resources
    # Appendix C's columns: category, image, scale policy, one per layer.
    headers = [
        th.text.strip(' \u25b2\u25bc')
        for th in web.find_elements('css selector', '#header th')
    ]
    assert headers[:4] == ['#', 'Category', 'Image', 'Scale Policy']
    assert headers[-NUM_BLOCKS:] == [f'layer_{i}' for i in range(NUM_BLOCKS)]
    rows = web.find_elements('css selector', '#rows tr')
    assert len(rows) == 50
    assert text_of(web, 'page-info') == 'Page 1 of 3'
    assert text_of(web, 'row-count') == '130 of 130 images'
    assert len(rows[0].find_elements('css selector',
                                     '.policy span')) == NUM_BLOCKS
    # The thumbnails decode.
    assert web.execute_script("var i = document.querySelector('#rows img');"
                              'return i.complete && i.naturalWidth;') == 24

    # Click a layer header: ascending over *all* rows, page by page.
    click_header(web, 'layer_3')
    ascending = sorted(scores[:, 3])
    got = visible_values(web, 3)
    assert got == sorted(got)
    np.testing.assert_allclose(got, ascending[:50], atol=1e-6)
    header = web.find_element('css selector', 'th[data-sort="layer_3"]')
    assert header.get_attribute('aria-sort') == 'ascending'
    web.find_element('id', 'next-page').click()
    assert text_of(web, 'page-info') == 'Page 2 of 3'
    np.testing.assert_allclose(
        visible_values(web, 3), ascending[50:100], atol=1e-6)
    web.find_element('id', 'last-page').click()
    assert text_of(web, 'page-info') == 'Page 3 of 3'
    np.testing.assert_allclose(
        visible_values(web, 3), ascending[100:], atol=1e-6)
    assert not web.find_element('id', 'next-page').is_enabled()

    # Click again: descending, back on page 1.
    click_header(web, 'layer_3')
    assert header.get_attribute('aria-sort') == 'descending'
    assert text_of(web, 'page-info') == 'Page 1 of 3'
    np.testing.assert_allclose(
        visible_values(web, 3), ascending[::-1][:50], atol=1e-6)

    # Sort by category.
    click_header(web, 'category')
    shown = [
        td.text
        for td in web.find_elements('css selector', '#rows td.category')
    ]
    expected = sorted(
        (category_text(r).lower(), r['index']) for r in records)[:50]
    assert [s.lower() for s in shown] == [e[0] for e in expected]

    # Filter on category: only matching rows remain, across pages.
    box = web.find_element('id', 'filter')
    box.send_keys('CHER')
    matching = [r for r in records if 'cher' in category_text(r).lower()]
    assert 0 < len(matching) < 50
    shown = [
        td.text
        for td in web.find_elements('css selector', '#rows td.category')
    ]
    assert len(shown) == len(matching)
    assert all('cherry' in s for s in shown)
    assert text_of(web, 'row-count') == f'{len(matching)} of 130 images'
    assert text_of(web, 'page-info') == 'Page 1 of 1'
    box.clear()
    box.send_keys('a')  # most rows: paging still works on a filtered view
    with_a = [r for r in records if 'a' in category_text(r).lower()]
    assert text_of(web, 'row-count') == f'{len(with_a)} of 130 images'
    assert text_of(web, 'page-info') == \
        f'Page 1 of {(len(with_a) + 49) // 50}'
    web.execute_script("var f = document.getElementById('filter');"
                       "f.value = ''; f.dispatchEvent(new Event('input'));")
    assert text_of(web, 'row-count') == '130 of 130 images'

    # The Elastic-right, baseline-wrong view.
    web.find_element('id', 'only-improved').click()
    improved = [
        r for r in records if r['correct'] and not r['baseline_correct']
    ]
    assert text_of(web, 'row-count') == f'{len(improved)} of 130 images'
    for tr in web.find_elements('css selector', '#rows tr'):
        assert tr.find_element('css selector', 'td.prediction .ok')
        assert tr.find_element('css selector', 'td.baseline .wrong')
    web.find_element('id', 'only-improved').click()

    # Rows per page.
    from selenium.webdriver.support.ui import Select
    Select(web.find_element('id', 'page-size')).select_by_value('100')
    assert len(web.find_elements('css selector', '#rows tr')) == 100
    assert text_of(web, 'page-info') == 'Page 1 of 2'

    severe = [e for e in web.get_log('browser') if e['level'] == 'SEVERE']
    assert not severe, severe
    shot = tmp_path / 'demo.png'
    web.save_screenshot(str(shot))
    assert shot.stat().st_size > 0


def test_thousands_of_rows_stay_responsive(browser, tmp_path):
    web = browser
    results = make_results(6000, seed=1, thumbnails=False)
    path = write_scale_policy_html(results, str(tmp_path / 'big.html'))
    start = time.perf_counter()
    open_page(web, path)
    load_seconds = time.perf_counter() - start
    assert len(web.find_elements('css selector', '#rows tr')) == 50
    assert text_of(web, 'page-info') == 'Page 1 of 120'
    # Sorting 6000 rows and drawing a page, timed inside the page.
    elapsed = web.execute_script(
        'var t = performance.now();'
        "document.querySelector('th[data-sort=\"layer_5\"]').click();"
        'return performance.now() - t;')
    got = visible_values(web, 5)
    np.testing.assert_allclose(
        got, sorted(results.scores[:, 5])[:50], atol=1e-6)
    assert elapsed < 1500, f'sorting took {elapsed:.0f} ms'
    assert load_seconds < 15, f'loading took {load_seconds:.1f} s'
