// Page texts. Spanish is the default; `?lang=pt-BR` or `?lang=en` switch.

export const DEFAULT_LANGUAGE = 'es';

const es = {
  title: 'Cargas del proyecto',
  brand: 'BuildPeer',
  project: 'Proyecto',
  loginTitle: 'Ingresar al panel de cargas',
  loginHelp: 'Pega el identificador del proyecto y tu token de acceso (buildpeer dev los imprime al iniciar).',
  token: 'Token de acceso',
  enter: 'Entrar',
  logout: 'Salir',
  invalidProject: 'El identificador del proyecto no es válido.',
  missingToken: 'Falta el token de acceso.',
  sessionExpired: 'Tu sesión expiró o el token no es válido. Vuelve a ingresar.',
  forbidden: 'No tienes acceso a este proyecto.',
  notFound: 'No encontramos este proyecto.',
  loadFailed: 'No se pudo cargar la lista: {message}',
  live: 'En vivo',
  connecting: 'Conectando…',
  offline: 'Sin conexión en vivo',
  uploadsHeading: 'Archivos',
  uploadHeading: 'Subir archivos',
  readOnly: 'Tu rol solo permite ver las cargas de este proyecto.',
  empty: 'Todavía no hay archivos en este proyecto. Arrastra fotos o documentos arriba para subirlos.',
  loadMore: 'Cargar más',
  colPreview: 'Vista previa',
  colFile: 'Archivo',
  colStatus: 'Estado',
  colDate: 'Fecha',
  colActions: 'Acciones',
  pickProject: 'Cambiar de proyecto:',
  notifications: 'Notificaciones',
  noNotifications: 'No tienes notificaciones.',
  open: 'Abrir',
  retry: 'Reintentar',
  delete: 'Eliminar',
  deleteFailed: 'No se pudo eliminar: {message}',
  uploaderNote: 'Fotos (JPEG, PNG, HEIC) y documentos (PDF). Se analizan antes de publicarse.',
  received: '{percent} % recibido',
  count: '{count} archivos',
  countOne: '1 archivo',
  status: {
    pending: 'Pendiente',
    uploading: 'Subiendo',
    uploaded: 'Subida',
    scanning: 'Analizando',
    processing: 'Procesando',
    ready: 'Lista',
    failed: 'Fallida',
    quarantined: 'En cuarentena',
    deleted: 'Eliminada',
  },
  reason: {
    aborted: 'La carga se canceló.',
    expired: 'La carga no se completó a tiempo.',
    infected: 'Se detectó un virus: el archivo quedó en cuarentena.',
    type_mismatch: 'El contenido no coincide con el tipo de archivo declarado.',
    type_not_allowed: 'Este tipo de archivo no está permitido.',
    too_large: 'El archivo supera el tamaño máximo permitido.',
    corrupt: 'El archivo está dañado o no se puede leer.',
    decompression_bomb: 'La imagen es demasiado grande para procesarla.',
    encrypted: 'El documento está cifrado y no se puede procesar.',
    processing_failed: 'Ocurrió un error al procesar el archivo.',
    processing_timeout: 'El procesamiento tardó demasiado.',
    size_mismatch: 'El tamaño del archivo no coincide con el declarado.',
    checksum_mismatch: 'El archivo llegó dañado (la suma de verificación no coincide).',
    scan_limit_exceeded: 'El archivo supera los límites del análisis antivirus.',
    too_complex: 'El archivo es demasiado complejo para procesarlo.',
  },
  unknownReason: 'Motivo: {code}',
};

const ptBR = {
  title: 'Envios do projeto',
  brand: 'BuildPeer',
  project: 'Projeto',
  loginTitle: 'Entrar no painel de envios',
  loginHelp: 'Cole o identificador do projeto e o seu token de acesso (buildpeer dev os imprime ao iniciar).',
  token: 'Token de acesso',
  enter: 'Entrar',
  logout: 'Sair',
  invalidProject: 'O identificador do projeto não é válido.',
  missingToken: 'Falta o token de acesso.',
  sessionExpired: 'A sua sessão expirou ou o token não é válido. Entre novamente.',
  forbidden: 'Você não tem acesso a este projeto.',
  notFound: 'Não encontramos este projeto.',
  loadFailed: 'Não foi possível carregar a lista: {message}',
  live: 'Ao vivo',
  connecting: 'Conectando…',
  offline: 'Sem conexão ao vivo',
  uploadsHeading: 'Arquivos',
  uploadHeading: 'Enviar arquivos',
  readOnly: 'O seu perfil só permite ver os envios deste projeto.',
  empty: 'Ainda não há arquivos neste projeto. Arraste fotos ou documentos acima para enviá-los.',
  loadMore: 'Carregar mais',
  colPreview: 'Prévia',
  colFile: 'Arquivo',
  colStatus: 'Status',
  colDate: 'Data',
  colActions: 'Ações',
  pickProject: 'Trocar de projeto:',
  notifications: 'Notificações',
  noNotifications: 'Você não tem notificações.',
  open: 'Abrir',
  retry: 'Tentar novamente',
  delete: 'Excluir',
  deleteFailed: 'Não foi possível excluir: {message}',
  uploaderNote: 'Fotos (JPEG, PNG, HEIC) e documentos (PDF). São verificados antes de publicados.',
  received: '{percent} % recebido',
  count: '{count} arquivos',
  countOne: '1 arquivo',
  status: {
    pending: 'Pendente',
    uploading: 'Enviando',
    uploaded: 'Enviado',
    scanning: 'Verificando',
    processing: 'Processando',
    ready: 'Pronto',
    failed: 'Falhou',
    quarantined: 'Em quarentena',
    deleted: 'Excluída',
  },
  reason: {
    aborted: 'O envio foi cancelado.',
    expired: 'O envio não terminou a tempo.',
    infected: 'Vírus detectado: o arquivo foi colocado em quarentena.',
    type_mismatch: 'O conteúdo não corresponde ao tipo de arquivo declarado.',
    type_not_allowed: 'Este tipo de arquivo não é permitido.',
    too_large: 'O arquivo excede o tamanho máximo permitido.',
    corrupt: 'O arquivo está danificado ou ilegível.',
    decompression_bomb: 'A imagem é grande demais para ser processada.',
    encrypted: 'O documento está criptografado e não pode ser processado.',
    processing_failed: 'Ocorreu um erro ao processar o arquivo.',
    processing_timeout: 'O processamento demorou demais.',
    size_mismatch: 'O tamanho do arquivo não corresponde ao declarado.',
    checksum_mismatch: 'O arquivo chegou corrompido (a soma de verificação não confere).',
    scan_limit_exceeded: 'O arquivo excede os limites da verificação antivírus.',
    too_complex: 'O arquivo é complexo demais para ser processado.',
  },
  unknownReason: 'Motivo: {code}',
};

const en = {
  title: 'Project uploads',
  brand: 'BuildPeer',
  project: 'Project',
  loginTitle: 'Sign in to the uploads dashboard',
  loginHelp: 'Paste the project id and your access token (buildpeer dev prints them at start).',
  token: 'Access token',
  enter: 'Sign in',
  logout: 'Sign out',
  invalidProject: 'The project id is not valid.',
  missingToken: 'The access token is missing.',
  sessionExpired: 'Your session expired or the token is not valid. Sign in again.',
  forbidden: 'You do not have access to this project.',
  notFound: 'This project was not found.',
  loadFailed: 'Could not load the list: {message}',
  live: 'Live',
  connecting: 'Connecting…',
  offline: 'Live updates offline',
  uploadsHeading: 'Files',
  uploadHeading: 'Upload files',
  readOnly: 'Your role can only view this project’s uploads.',
  empty: 'No files in this project yet. Drop photos or documents above to upload them.',
  loadMore: 'Load more',
  colPreview: 'Preview',
  colFile: 'File',
  colStatus: 'Status',
  colDate: 'Date',
  colActions: 'Actions',
  pickProject: 'Switch project:',
  notifications: 'Notifications',
  noNotifications: 'You have no notifications.',
  open: 'Open',
  retry: 'Retry',
  delete: 'Delete',
  deleteFailed: 'Could not delete: {message}',
  uploaderNote: 'Photos (JPEG, PNG, HEIC) and documents (PDF). They are scanned before they are published.',
  received: '{percent} % received',
  count: '{count} files',
  countOne: '1 file',
  status: {
    pending: 'Pending',
    uploading: 'Uploading',
    uploaded: 'Uploaded',
    scanning: 'Scanning',
    processing: 'Processing',
    ready: 'Ready',
    failed: 'Failed',
    quarantined: 'Quarantined',
    deleted: 'Deleted',
  },
  reason: {
    aborted: 'The upload was cancelled.',
    expired: 'The upload did not finish in time.',
    infected: 'A virus was found: the file is quarantined.',
    type_mismatch: 'The content does not match the declared file type.',
    type_not_allowed: 'This file type is not allowed.',
    too_large: 'The file is larger than the maximum size.',
    corrupt: 'The file is damaged or unreadable.',
    decompression_bomb: 'The image is too large to process.',
    encrypted: 'The document is encrypted and cannot be processed.',
    processing_failed: 'Processing the file failed.',
    processing_timeout: 'Processing took too long.',
    size_mismatch: "The file's size does not match the size declared.",
    checksum_mismatch: 'The file arrived corrupted (its checksum does not match).',
    scan_limit_exceeded: "The file exceeds the virus scanner's limits.",
    too_complex: 'The file is too complex to process.',
  },
  unknownReason: 'Reason: {code}',
};

export const MESSAGES = { es, 'pt-BR': ptBR, en };

export function pickLanguage(requested) {
  if (typeof requested !== 'string') return DEFAULT_LANGUAGE;
  const exact = Object.keys(MESSAGES).find((l) => l.toLowerCase() === requested.toLowerCase());
  if (exact) return exact;
  const base = requested.split('-')[0].toLowerCase();
  if (base === 'pt') return 'pt-BR';
  return MESSAGES[base] ? base : DEFAULT_LANGUAGE;
}

function fill(template, vars) {
  return template.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

export class I18n {
  constructor(language) {
    this.language = pickLanguage(language);
    this.messages = MESSAGES[this.language];
    this.dateFormat = new Intl.DateTimeFormat(this.language, { dateStyle: 'medium', timeStyle: 'short' });
    this.numberFormat = new Intl.NumberFormat(this.language, { maximumFractionDigits: 1 });
  }

  t(key, vars = {}) {
    const template = this.messages[key];
    return typeof template === 'string' ? fill(template, vars) : key;
  }

  status(status) {
    return this.messages.status[status] ?? status;
  }

  reason(code) {
    if (!code) return '';
    return this.messages.reason[code] ?? fill(this.messages.unknownReason, { code });
  }

  bytes(n) {
    const value = Number(n);
    if (!Number.isFinite(value) || value < 0) return '';
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let size = value;
    let unit = 0;
    while (size >= 1024 && unit < units.length - 1) {
      size /= 1024;
      unit += 1;
    }
    return `${this.numberFormat.format(size)} ${units[unit]}`;
  }

  date(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? '' : this.dateFormat.format(d);
  }
}
