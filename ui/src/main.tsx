// Entry point: Mantine theme, the query cache, and the hub that keeps watched collections in it.

import '@mantine/core/styles.css';
import './ui.css';
import { createTheme, MantineProvider, type CSSVariablesResolver } from '@mantine/core';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { WatchHub, WatchHubContext } from './api/index.js';
import { App } from './App.js';

// Dark shades and automatic text contrast, so coloured badges and buttons meet WCAG AA contrast (axe checks it).
// Transitions (dialogs fading in) are skipped for users whose system asks for reduced motion.
const theme = createTheme({ primaryShade: { light: 9, dark: 8 }, autoContrast: true, luminanceThreshold: 0.17, respectReducedMotion: true });
// Mantine's dimmed grey is below 4.5:1 on white; one shade darker passes.
const cssVariables: CSSVariablesResolver = () => ({ variables: {}, light: { '--mantine-color-dimmed': 'var(--mantine-color-gray-7)' }, dark: {} });
const queryClient = new QueryClient({ defaultOptions: { queries: { retry: 1, refetchOnWindowFocus: false } } });
const hub = new WatchHub(queryClient);
const root = document.getElementById('root');
if (!root) throw new Error('index.html has no #root');

createRoot(root).render(
  <StrictMode>
    <MantineProvider theme={theme} cssVariablesResolver={cssVariables} defaultColorScheme="light">
      <QueryClientProvider client={queryClient}>
        <WatchHubContext.Provider value={hub}>
          <App />
        </WatchHubContext.Provider>
      </QueryClientProvider>
    </MantineProvider>
  </StrictMode>,
);
